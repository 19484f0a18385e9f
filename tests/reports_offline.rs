//! Reports say what happened (issue 9 §3), on file trees (`--root`), through
//! the binary: a dry run writes nothing anywhere, `--persist` results go
//! through the one output path (JSON shape, a full stdout is an error and no
//! panic), concurrent `--persist` runs both land in the files, a missing
//! `--root` is an error, and `modules unload --dry-run` plans from an
//! offline module tree (kmod's `modprobe -r -n` as the oracle where it can
//! be one). No privileges needed.

mod support;
#[path = "support/tree.rs"]
mod tree;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{nfkit, run};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn with_root(root: &Path) -> Command {
    let mut c = nfkit();
    c.arg("--root").arg(root);
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything under `root` (symlinks not followed): kind, mode, size, mtime
/// in ns, contents.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, i64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir).unwrap();
        out.insert(
            dir.clone(),
            (meta.mode(), meta.mtime(), meta.mtime_nsec(), Vec::new()),
        );
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let contents = if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                fs::read(&path).unwrap()
            };
            out.insert(
                path,
                (meta.mode(), meta.mtime(), meta.mtime_nsec(), contents),
            );
        }
    }
    out
}

/// Host layouts a dry run is tried on; the module tree is linked in as lib/.
fn layouts() -> Vec<(&'static str, tempfile::TempDir)> {
    let t = tree::kernel_tree();
    let mut out = Vec::new();
    for name in ["empty", "systemd", "debian", "el", "with-config"] {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        t.install_into(r);
        match name {
            "systemd" => {
                fs::create_dir_all(r.join("run/systemd/system")).unwrap();
                for d in ["etc/modules-load.d", "etc/modprobe.d", "etc/sysctl.d"] {
                    fs::create_dir_all(r.join(d)).unwrap();
                }
            }
            "debian" => {
                write(r, "/etc/debian_version", "12.5\n");
                write(r, "/etc/modules", "# /etc/modules\nloop\n");
                fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
                fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
            }
            "el" => {
                write(
                    r,
                    "/etc/sysconfig/iptables-config",
                    "IPTABLES_MODULES=\"ip_conntrack_ftp\"\n",
                );
                write(r, "/etc/sysctl.conf", "net.nf_conntrack_max = 500000\n");
                fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
            }
            "with-config" => {
                fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
                fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
                write(
                    r,
                    "/etc/nfkit/nfkit.toml",
                    "# mine\n[modules]\nload = [\"nf_nat\"]\n[conntrack]\nmax = 1000\n",
                );
            }
            _ => {}
        }
        out.push((name, dir));
    }
    out
}

/// Every command that accepts `--dry-run` (and `apply --check`), with and
/// without `--persist` and `--json`, on every layout: the whole tree is the
/// same before and after, byte for byte and mtime for mtime.
#[test]
fn a_dry_run_writes_nothing_anywhere() {
    let release = &tree::kernel_tree().release;
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "conntrack",
            "set",
            "--max",
            "5000",
            "--persist",
            "--dry-run",
        ],
        vec!["conntrack", "set", "--buckets", "4096", "--persist", "-n"],
        vec![
            "conntrack",
            "set",
            "--dry-run",
            "--persist",
            "net.nf_conntrack_max=7",
        ],
        vec!["conntrack", "set", "--max", "5000", "--dry-run"],
        vec!["modules", "load", "--dry-run", "--persist", "xt_state"],
        vec![
            "modules",
            "load",
            "-n",
            "--persist",
            "nf_conntrack",
            "hashsize=4096",
        ],
        vec!["modules", "load", "--dry-run", "xt_state", "nf_nat"],
        vec!["modules", "unload", "--dry-run", "xt_state", "nf_conntrack"],
        vec!["modules", "unload", "-n", "-i", "iptable_nat"],
        vec!["apply", "--check"],
        vec!["apply", "--check", "--diff"],
    ];
    let mut runs = 0;
    for (layout, dir) in layouts() {
        let r = dir.path();
        let before = snapshot(r);
        for command in &commands {
            for json in [false, true] {
                let mut c = with_root(r);
                if json {
                    c.arg("--json");
                }
                c.args(command);
                if command[0] == "modules" {
                    c.arg("--kernel-release").arg(release);
                }
                let out = run(&mut c);
                runs += 1;
                assert!(
                    !text(&out.stderr).contains("panicked"),
                    "{layout} {command:?}: {out:?}"
                );
                assert_eq!(
                    snapshot(r),
                    before,
                    "{layout}: {command:?} (json {json}) changed the tree:\n{}\n{}",
                    text(&out.stdout),
                    text(&out.stderr)
                );
                if json {
                    let _: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                        panic!("{layout} {command:?}: invalid JSON ({e}): {out:?}")
                    });
                }
            }
        }
        // The same persist commands without --dry-run do write (the test
        // can tell a write from none).
        let out = run(with_root(r).args(["conntrack", "set", "--max", "5000", "--persist"]));
        // 3: written, but the next boot still differs (a layout with no boot
        // path for modules); never an error.
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{layout}: {out:?}"
        );
        assert_ne!(snapshot(r), before, "{layout}: --persist wrote nothing");
    }
    assert_eq!(runs, 5 * 11 * 2);
}

#[test]
fn persist_dry_run_reports_what_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
    fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
    let out = run(with_root(r).args([
        "--json",
        "conntrack",
        "set",
        "--max",
        "5000",
        "--persist",
        "--dry-run",
    ]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["persist"];
    assert_eq!(p["dry_run"], true);
    assert_eq!(p["config_action"], "create");
    assert!(p["config_diff"].as_str().unwrap().contains("+max = 5000"));
    assert_eq!(p["apply"]["check"], true);
    let sysctl = p["apply"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["target"] == "sysctl.d")
        .unwrap();
    assert_eq!(sysctl["action"], "create");
    assert!(!r.join("etc/nfkit").exists());
    let out = run(with_root(r).args(["conntrack", "set", "--max", "5000", "--persist", "-n"]));
    let t = text(&out.stdout);
    assert!(t.starts_with("would persist in "), "{t}");
    assert!(
        t.contains("would create /etc/sysctl.d/90-nfkit.conf"),
        "{t}"
    );
}

/// `--persist` results go through the output layer: JSON with a `persist`
/// key (text otherwise, nothing with -q), in every persist command.
#[test]
fn persist_reports_are_json_like_every_result() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for d in ["etc/modprobe.d", "etc/sysctl.d", "etc/modules-load.d"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    fs::create_dir_all(r.join("run/systemd/system")).unwrap();
    let out = run(with_root(r).args(["--json", "modules", "load", "nf_conntrack", "--persist"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    let p = &v["persist"];
    assert_eq!(p["dry_run"], false);
    assert_eq!(p["config_action"], "create");
    assert!(
        p["config"]
            .as_str()
            .unwrap()
            .ends_with("etc/nfkit/nfkit.toml")
    );
    assert_eq!(p["apply"]["check"], false);
    let files: Vec<(&str, &str)> = p["apply"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["target"].as_str().unwrap(), f["action"].as_str().unwrap()))
        .collect();
    assert!(files.contains(&("modules-load.d", "create")), "{files:?}");
    for key in ["runtime", "failures", "remaining", "notes"] {
        assert!(p["apply"][key].is_array(), "{key}: {v:#}");
    }
    // Offline, no kernel report: only `persist`.
    assert_eq!(v.as_object().unwrap().len(), 1, "{v:#}");
    // Again: nfkit.toml unchanged, nothing written.
    let v: Value = serde_json::from_slice(
        &run(with_root(r).args(["--json", "conntrack", "set", "--max", "5000", "--persist"]))
            .stdout,
    )
    .unwrap();
    assert_eq!(v["persist"]["config_action"], "update");
    let again =
        run(with_root(r).args(["--json", "conntrack", "set", "--max", "5000", "--persist"]));
    let v: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["persist"]["config_action"], "unchanged");
    assert!(
        v["persist"]["apply"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "unchanged"),
        "{v:#}"
    );
    // -q: nothing on stdout; text: the persist report.
    let out = run(with_root(r).args(["-q", "modules", "load", "xt_state", "--persist"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "");
    let out = run(with_root(r).args(["modules", "load", "xt_state", "--persist"]));
    assert!(text(&out.stdout).contains("(already there)"), "{out:?}");
}

fn to_full_stdout(c: &mut Command) -> Output {
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    c.stdout(Stdio::from(full)).stderr(Stdio::piped());
    c.output().unwrap()
}

/// With stdout on a full disk every persist command fails with exit 1 and
/// an error on stderr; none panics.
#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let commands: Vec<Vec<&str>> = vec![
        vec!["modules", "load", "nf_conntrack", "--persist"],
        vec!["conntrack", "set", "--max", "5000", "--persist"],
        vec![
            "conntrack",
            "set",
            "--max",
            "6000",
            "--persist",
            "--dry-run",
        ],
        vec!["modules", "load", "xt_state", "--persist", "--dry-run"],
        vec!["apply"],
        vec!["apply", "--check"],
        vec!["verify"],
        vec!["status"],
    ];
    for json in [false, true] {
        for command in &commands {
            let dir = tempfile::tempdir().unwrap();
            let r = dir.path();
            fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
            write(r, "/etc/nfkit/nfkit.toml", "[conntrack]\nmax = 1000\n");
            let mut c = with_root(r);
            if json {
                c.arg("--json");
            }
            let out = to_full_stdout(c.args(command));
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command:?} json={json}: {err}");
            assert!(!err.contains("panicked"), "{command:?}: {err}");
            assert!(
                err.contains("nfkit: error: write the report to stdout: No space left on device"),
                "{command:?}: {err}"
            );
        }
    }
}

fn systemd_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    fs::create_dir_all(r.join("run/systemd/system")).unwrap();
    for d in ["etc/modules-load.d", "etc/modprobe.d", "etc/sysctl.d"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        "[modules]\nload = [\"nf_nat\"]\n[conntrack]\nmax = 1000\n",
    );
    dir
}

/// `conntrack set --persist`, `modules load --persist` and `apply` at the
/// same time: both edits are in nfkit.toml AND in the files after every
/// round (`apply --check` exits 0).
#[test]
fn concurrent_persists_both_land_in_the_files() {
    for round in 0..100 {
        let dir = systemd_root();
        let r = dir.path();
        let max = (10_000 + round).to_string();
        let module = ["xt_state", "xt_conntrack", "nf_nat_ftp", "xt_limit"][round % 4];
        let spawn = |args: &[&str]| {
            with_root(r)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let children = [
            spawn(&["conntrack", "set", "--max", &max, "--persist"]),
            spawn(&["modules", "load", "--persist", module]),
            spawn(&["apply"]),
        ];
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "round {round}: {out:?}");
        }
        let config = fs::read_to_string(r.join("etc/nfkit/nfkit.toml")).unwrap();
        assert!(
            config.contains(&format!("max = {max}")) && config.contains(module),
            "round {round}: nfkit.toml lost an edit:\n{config}"
        );
        let check = run(with_root(r).args(["apply", "--check"]));
        assert_eq!(
            check.status.code(),
            Some(0),
            "round {round}: files differ from nfkit.toml:\n{}",
            text(&check.stdout)
        );
        let sysctl = fs::read_to_string(r.join("etc/sysctl.d/90-nfkit.conf")).unwrap();
        assert!(sysctl.contains(&max), "round {round}: {sysctl}");
        let modules = fs::read_to_string(r.join("etc/modules-load.d/nfkit.conf")).unwrap();
        assert!(modules.contains(module), "round {round}: {modules}");
    }
}

/// A missing or non-directory --root is an error (exit 1, naming it) for
/// every command, text and JSON.
#[test]
fn a_missing_root_is_an_error_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let missing = dir.path().join("nonexistent");
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["conntrack"],
        vec!["conntrack", "set", "--max", "5000", "--persist"],
        vec![
            "conntrack",
            "set",
            "--max",
            "5000",
            "--persist",
            "--dry-run",
        ],
        vec!["tables"],
        vec!["tables", "show", "filter"],
        vec!["modules", "list"],
        vec!["modules", "resolve", "xt_state"],
        vec!["modules", "load", "--dry-run", "xt_state"],
        vec!["modules", "load", "--persist", "xt_state"],
        vec!["modules", "unload", "--dry-run", "xt_state"],
        vec!["apply"],
        vec!["apply", "--check"],
        vec!["verify"],
        vec!["import"],
        vec!["boot"],
    ];
    for (root, what) in [
        (&missing, "No such file or directory"),
        (&file, "not a directory"),
    ] {
        for command in &commands {
            let out = run(with_root(root).args(command));
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command:?}: {out:?}");
            assert!(
                err.starts_with(&format!(
                    "nfkit: error: use --root {}: {what}",
                    root.display()
                )),
                "{command:?}: {err}"
            );
            assert!(err.contains("hint: --root takes the directory"), "{err}");
            assert_eq!(text(&out.stdout), "", "{command:?}");
            let out = run(with_root(root).arg("--json").args(command));
            assert_eq!(out.status.code(), Some(1));
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("use --root"),
                "{v:#}"
            );
        }
    }
    assert!(!missing.exists(), "nothing may be created");
}

/// A root with the module tree, and etc/modprobe.d holding `conf`.
fn tree_root(conf: &str) -> tempfile::TempDir {
    let t = tree::kernel_tree();
    let dir = tempfile::tempdir().unwrap();
    t.install_into(dir.path());
    write(dir.path(), "/etc/modprobe.d/test.conf", conf);
    dir
}

fn unload_json(root: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let out = run(with_root(root)
        .args(["--json", "modules", "unload", "--kernel-release"])
        .arg(&tree::kernel_tree().release)
        .args(args));
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: invalid JSON ({e}): {out:?}"));
    (out.status.code(), v)
}

/// kmod's `modprobe -r -n -v -d ROOT -S REL` reads the loaded state of the
/// host it runs on; for names the host kernel does not hold (so nothing is
/// loaded for modprobe either), nfkit's offline dry run agrees with it:
/// nothing to do (exit 0) for known modules, an error for unknown and
/// built-in ones.
#[test]
fn unload_dry_run_offline_matches_modprobe_on_an_unloaded_tree() {
    let t = tree::kernel_tree();
    let root = tree_root("");
    let names = [
        "xt_state",
        "ipt_state",
        "iptable_nat",
        "iptable_filter",
        "nf_nat",
        "nft_ct",
        "nf_tables",
        "x_tables",
        "br_netfilter",
        "xt_conntrack",
        "xt_multiport",
        "ipt_REJECT",
        "ip6t_REJECT",
        "xt_MASQUERADE",
        "nf_nat_ftp",
        "ip_nat_ftp",
        "nfnetlink_queue",
        "xt_LOG",
        "nf_reject_ipv4",
        "nosuch_module",
        "tcp_cubic",
    ];
    let mut compared = 0;
    for name in names {
        let mut cmd = Command::new("modprobe");
        cmd.args(["-r", "-n", "-v", "-d"])
            .arg(root.path())
            .arg("-S")
            .arg(&t.release)
            .arg("-C")
            .arg(root.path().join("etc/modprobe.d"))
            .arg(name);
        let oracle = cmd
            .output()
            .expect("cannot run modprobe (kmod is the oracle: install kmod)");
        let printed = text(&oracle.stdout);
        if printed.contains("rmmod") {
            // The host kernel holds it: modprobe's answer is about the host.
            continue;
        }
        compared += 1;
        let (code, v) = unload_json(root.path(), &["--dry-run", name]);
        let result = &v["results"][0];
        if oracle.status.success() {
            assert_eq!(code, Some(0), "{name}: {v:#}");
            assert_eq!(
                result["modules"][0]["outcome"], "not_loaded",
                "{name}: {v:#}"
            );
            assert_eq!(result["modules"][0]["steps"], serde_json::json!([]));
        } else {
            assert_eq!(
                code,
                Some(1),
                "{name}: modprobe failed, nfkit did not: {v:#}"
            );
            assert_eq!(result["ok"], false);
        }
    }
    assert!(compared >= 15, "only {compared} names comparable");
}

/// With a snapshot of loaded modules in ROOT/proc/modules, the offline dry
/// run plans like the live one: the target, then the dependencies left
/// unused; a module in use is refused naming its holders. Nothing is written.
#[test]
fn unload_dry_run_offline_plans_from_the_roots_loaded_modules() {
    let root = tree_root("");
    write(
        root.path(),
        "/proc/modules",
        "xt_state 16384 0 - Live 0x0\n\
         nf_conntrack 200000 1 xt_state, Live 0x0\n\
         nf_defrag_ipv6 20000 1 nf_conntrack, Live 0x0\n\
         nf_defrag_ipv4 20000 1 nf_conntrack, Live 0x0\n\
         libcrc32c 16000 1 nf_conntrack, Live 0x0\n\
         x_tables 50000 2 xt_state,iptable_filter, Live 0x0\n\
         iptable_filter 16000 0 - Live 0x0\n",
    );
    let before = snapshot(root.path());
    let (code, v) = unload_json(root.path(), &["--dry-run", "xt_state"]);
    assert_eq!(code, Some(0), "{v:#}");
    let m = &v["results"][0]["modules"][0];
    assert_eq!(m["outcome"], "would_remove");
    let removed: Vec<&str> = m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["result"]["status"] == "removed")
        .map(|s| s["module"].as_str().unwrap())
        .collect();
    assert_eq!(removed[0], "xt_state");
    assert!(removed.contains(&"nf_conntrack"), "{removed:?}");
    assert!(
        !removed.contains(&"x_tables"),
        "still held by iptable_filter"
    );
    let (code, v) = unload_json(root.path(), &["--dry-run", "nf_conntrack"]);
    assert_eq!(code, Some(1));
    let err = &v["results"][0]["modules"][0]["error"];
    assert_eq!(err["kind"], "in_use", "{v:#}");
    assert!(err["message"].as_str().unwrap().contains("xt_state"));
    // A real unload still needs the running kernel.
    let (code, v) = unload_json(root.path(), &["xt_state"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["results"][0]["error"]["kind"], "target", "{v:#}");
    assert_eq!(snapshot(root.path()), before);
}

/// A module that is not loaded is `not_loaded`, whatever remove command
/// modprobe.d gives it (modprobe would run the command; nfkit never does).
/// Loaded, the command is still refused.
#[test]
fn unload_of_a_module_not_loaded_with_a_remove_command_is_not_loaded() {
    let marker = std::env::temp_dir().join(format!("nfkit-remove-ran-{}", std::process::id()));
    let root = tree_root(&format!(
        "remove xt_state /bin/true\nremove nf_nat touch {}\n",
        marker.display()
    ));
    for name in ["xt_state", "nf_nat"] {
        for extra in [&[][..], &["--ignore-install"][..]] {
            let mut args = vec!["--dry-run"];
            args.extend_from_slice(extra);
            args.push(name);
            let (code, v) = unload_json(root.path(), &args);
            assert_eq!(code, Some(0), "{name}: {v:#}");
            assert_eq!(v["results"][0]["modules"][0]["outcome"], "not_loaded");
        }
    }
    write(
        root.path(),
        "/proc/modules",
        "xt_state 16384 0 - Live 0x0\nnf_nat 50000 0 - Live 0x0\n",
    );
    let (code, v) = unload_json(root.path(), &["--dry-run", "xt_state", "nf_nat"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        v["results"][0]["modules"][0]["error"]["kind"],
        "disabled_by_policy"
    );
    assert_eq!(
        v["results"][1]["modules"][0]["error"]["kind"],
        "command_refused"
    );
    assert!(!marker.exists(), "a remove command was run");
}
