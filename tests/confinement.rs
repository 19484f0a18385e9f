//! Kernel-enforced confinement (issue 11 §1, §2), through the binary: a
//! seccomp filter or a Landlock ruleset cannot be undone, so the tests never
//! install them in their own process. The hidden `__confinement-test` entry
//! (src/cli/selftest.rs) tries what must be refused.
//!
//! This machine's kernel has seccomp filters and Landlock: a test that finds
//! either missing fails (the confinement must be proven here, not skipped).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use support::{nfkit, run, write};

/// A Debian-with-systemd image tree (targets: modules-load.d, modprobe.d,
/// sysctl.d; never a file directly in /etc).
fn systemd_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "/lib/systemd/systemd", "");
    fs::create_dir_all(r.join("sbin")).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
    write(r, "/etc/debian_version", "12.5\n");
    for d in [
        "etc/modules-load.d",
        "etc/modprobe.d",
        "etc/sysctl.d",
        "usr/lib/modprobe.d",
    ] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    dir
}

/// Every file under `root` with its contents (symlinks as their target).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            let key = p.strip_prefix(root).unwrap().to_path_buf();
            if meta.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.insert(key, t.into_os_string().into_encoded_bytes());
            } else if meta.is_dir() {
                out.insert(key, b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(key, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_way_to_start_a_process_is_refused_and_threads_still_work() {
    let out = run(nfkit().env("LD_PRELOAD", support::spawn_probe()).args([
        "--json",
        "__confinement-test",
        "spawn",
    ]));
    // Refusals are errors (exit 1), never a kill.
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let attempts = report["attempts"].as_array().unwrap();
    let mut calls = Vec::new();
    for a in attempts {
        let call = a["call"].as_str().unwrap();
        calls.push(call);
        let (outcome, errno) = match call {
            "thread" => ("ok", Value::Null),
            "clone3" => ("refused", Value::from("ENOSYS")),
            _ => ("refused", Value::from("EPERM")),
        };
        assert_eq!(a["outcome"], outcome, "{call}: {a}");
        assert_eq!(a["errno"], errno, "{call}: {a}");
    }
    for needed in [
        "execve",
        "execveat",
        "fork (glibc: clone)",
        "clone without CLONE_THREAD",
        "clone3",
        "posix_spawn",
        "thread",
    ] {
        assert!(calls.contains(&needed), "{needed} not tried: {calls:?}");
    }
    #[cfg(target_arch = "x86_64")]
    for needed in ["fork", "vfork", "x32 execve"] {
        assert!(calls.contains(&needed), "{needed} not tried: {calls:?}");
    }
    // Each refusal reported through the error scheme, with the hint.
    let err = stderr(&out);
    assert!(
        err.contains("nfkit: error: start a process with execve: Operation not permitted"),
        "{err}"
    );
    assert!(
        err.contains("hint: nfkit's seccomp filter refuses"),
        "{err}"
    );
    assert_eq!(
        err.matches("nfkit: error: ").count(),
        attempts.len() - 1,
        "{err}"
    );
}

/// The parallel loader's workers (issue 16) under the seccomp filter and
/// the read-only Landlock ruleset: the threads start, each opens its own
/// libkmod context and reaches the kernel's insert. This machine has no
/// loadable module support, so every real file gets ENOSYS from
/// finit_module; a missing file gets libkmod's ENOENT.
#[test]
fn parallel_load_workers_run_under_the_confinement() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--json",
        "__confinement-test",
        "load-threads",
        "--jobs",
        "3",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..5 {
        let p = dir.path().join(format!("m{i}.ko"));
        fs::write(&p, vec![0x7fu8; 4096]).unwrap();
        args.push(p.display().to_string());
    }
    args.push(dir.path().join("missing.ko").display().to_string());
    let out = run(nfkit().args(&args));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["threads"], 3, "{report}");
    let results: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["ENOSYS", "ENOSYS", "ENOSYS", "ENOSYS", "ENOSYS", "ENOENT"],
        "expected the kernel's ENOSYS (no module support here) for every file"
    );
}

#[test]
fn a_running_nfkit_is_in_seccomp_filter_mode() {
    let mut child = nfkit()
        .args(["__confinement-test", "wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    assert_eq!(pid, child.id());
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    drop(child.stdin.take()); // EOF: nfkit exits
    assert!(child.wait().unwrap().success());
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in\n{status}"))
            .to_string()
    };
    assert_eq!(field("Seccomp:"), "2", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    let filters: u32 = field("Seccomp_filters:").parse().unwrap();
    assert!(filters >= 1, "{status}");
}

#[test]
fn status_reports_the_confinement_in_force() {
    let out = run(nfkit().args(["status", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &report["confinement"];
    assert_eq!(c["seccomp"]["state"], "filter", "{c}");
    assert_eq!(c["seccomp_mode"], 2, "{c}");
    assert_eq!(c["landlock"]["state"], "enforced", "{c}");
    assert!(c["landlock"]["abi"].as_i64().unwrap() >= 1, "{c}");
    // status changes nothing: no path is writable.
    assert_eq!(c["landlock"]["writable"], serde_json::json!([]), "{c}");

    let text = String::from_utf8(run(nfkit().arg("status")).stdout).unwrap();
    assert!(
        text.contains("\nseccomp      filter (kernel mode 2)"),
        "{text}"
    );
    assert!(text.contains("\nlandlock     ABI "), "{text}");
    assert!(text.contains("no writes, no execute"), "{text}");
}

/// Read-only command lines (after `--root DIR`).
const READ_ONLY: &[&[&str]] = &[
    &["status"],
    &["verify"],
    &["apply", "--check"],
    &["import"],
    &["tables"],
    &["conntrack"],
    &["conntrack", "set", "--dry-run", "--max", "1000"],
    &["modules", "list"],
    &["modules", "resolve", "xt_state"],
    &["modules", "load", "--dry-run", "xt_state"],
    &["modules", "load", "--dry-run", "--persist", "xt_state"],
    &["modules", "unload", "--dry-run", "xt_state"],
    &["metrics"],
    &["explain", "xt_state"],
];

/// Places a write could be tried (inside the root, and the lock directory).
const PLACES: &[&str] = &[
    "etc/modprobe.d/x.conf",
    "etc/modules-load.d/x.conf",
    "etc/sysctl.d/x.conf",
    "etc/nfkit/nfkit.toml",
    "etc/x",
    "usr/lib/modprobe.d/x.conf",
    "x",
];

/// `nfkit __confinement-test write PATH -- --root ROOT COMMAND...`
fn write_as(root: &Path, path: &Path, command: &[&str]) -> std::process::Output {
    run(nfkit()
        .args(["__confinement-test", "write"])
        .arg(path)
        .arg("--")
        .arg("--root")
        .arg(root)
        .args(command))
}

fn assert_refused(out: &std::process::Output, path: &Path, command: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{command:?} {path:?}: {err}");
    assert!(err.contains("Permission denied"), "{command:?}: {err}");
    assert!(
        err.contains("hint: nfkit's Landlock ruleset refused the write"),
        "{command:?}: {err}"
    );
    assert!(!path.exists(), "{command:?} wrote {path:?}");
}

/// No read-only command can create or change a file anywhere under the
/// root, target directories and nfkit.toml included: every (command, place)
/// pair (a finite set, so all of it rather than a sample).
#[test]
fn read_only_commands_cannot_write() {
    let root = systemd_root();
    let toml = "[modules]\nload = [\"xt_state\"]\n";
    write(root.path(), "/etc/nfkit/nfkit.toml", toml);
    for place in PLACES {
        let path = root.path().join(place);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
    }
    let before = snapshot(root.path());
    for command in READ_ONLY {
        for place in PLACES {
            let path = root.path().join(place);
            let out = write_as(root.path(), &path, command);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{command:?} {place}: {err}");
            assert!(
                err.contains("hint: nfkit's Landlock ruleset refused the write"),
                "{command:?} {place}: {err}"
            );
        }
    }
    assert_eq!(snapshot(root.path()), before, "a read-only command wrote");
}

#[test]
fn read_only_commands_cannot_create_in_the_lock_directory() {
    let root = systemd_root();
    let lock_dir = ["/run/lock", "/run", "/tmp"]
        .iter()
        .map(Path::new)
        .find(|d| d.is_dir())
        .unwrap();
    let path = lock_dir.join(format!("nfkit-confinement-test-{}", std::process::id()));
    for command in READ_ONLY {
        let out = write_as(root.path(), &path, command);
        assert_refused(&out, &path, command);
    }
}

#[test]
fn apply_may_write_only_in_its_target_directories() {
    let root = systemd_root();
    let r = root.path();
    // Target directories: allowed.
    for place in [
        "etc/modprobe.d/x.conf",
        "etc/modules-load.d/x.conf",
        "etc/sysctl.d/x.conf",
    ] {
        let path = r.join(place);
        let out = write_as(r, &path, &["apply"]);
        assert!(out.status.success(), "{place}: {}", stderr(&out));
        fs::remove_file(&path).unwrap();
    }
    // Anything else: refused (no target is a file directly in /etc on a
    // systemd host, and nfkit.toml is written only by --persist).
    for place in ["etc/x", "etc/nfkit/x", "usr/lib/modprobe.d/x.conf", "x"] {
        let path = r.join(place);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert_refused(&write_as(r, &path, &["apply"]), &path, &["apply"]);
    }
    // --persist adds nfkit.toml's directory.
    let cmd = ["modules", "load", "--persist", "xt_state"];
    let path = r.join("etc/nfkit/x");
    let out = write_as(r, &path, &cmd);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `metrics --textfile PATH` may write in PATH's directory and nowhere
/// else (not in the root's target directories either).
#[test]
fn metrics_textfile_may_write_only_in_its_directory() {
    let root = systemd_root();
    let r = root.path();
    let out_dir = tempfile::tempdir().unwrap();
    let textfile = out_dir.path().join("nfkit.prom");
    let cmd = ["metrics", "--textfile", textfile.to_str().unwrap()];
    let beside = out_dir.path().join("other");
    let out = write_as(r, &beside, &cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    for place in ["etc/modprobe.d/x.conf", "etc/sysctl.d/x.conf", "x"] {
        let path = r.join(place);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert_refused(&write_as(r, &path, &cmd), &path, &cmd);
    }
    // A subdirectory of the textfile's directory is not writable either way
    // (FilesIn: files beneath; no MakeDir).
    let out = run(nfkit().arg("--root").arg(r).args(cmd));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(&textfile).unwrap();
    assert!(
        text.contains("# TYPE nfkit_desired_state_present gauge\n"),
        "{text}"
    );
}

#[test]
fn a_missing_target_directory_is_created_under_its_parent() {
    let root = systemd_root();
    let r = root.path();
    fs::remove_dir(r.join("etc/modules-load.d")).unwrap();
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        "[modules]\nload = [\"xt_state\"]\n",
    );
    let out = run(nfkit().arg("--root").arg(r).arg("apply"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(r.join("etc/modules-load.d/nfkit.conf").is_file());
}

#[test]
fn apply_through_a_symlink_out_of_its_directories_fails_and_writes_nothing() {
    let root = systemd_root();
    let r = root.path();
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        "[modules]\nload = [\"xt_state\"]\n[modules.options.nf_conntrack]\nexpect_hashsize = 2048\n",
    );
    // modprobe.d/nfkit.conf leads (inside the root) to /usr/lib/modprobe.d.
    write(
        r,
        "/usr/lib/modprobe.d/vendor.conf",
        "options nf_conntrack expect_hashsize=1024\n",
    );
    std::os::unix::fs::symlink(
        "/usr/lib/modprobe.d/vendor.conf",
        r.join("etc/modprobe.d/nfkit.conf"),
    )
    .unwrap();
    let before = snapshot(r);
    let out = run(nfkit().arg("--root").arg(r).arg("apply"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("usr/lib/modprobe.d"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        err.contains("hint: nfkit's Landlock ruleset refused the write"),
        "{err}"
    );
    assert_eq!(snapshot(r), before, "a refused apply changed the tree");
}
