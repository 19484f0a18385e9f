//! Reports say what happened, on the real kernel, in fresh network
//! namespaces (where the global conntrack limits are read-only): `boot` and
//! `apply` never report a refused limit as changed, list it under
//! `failures` only, and say so on stderr in every output mode. `apply`
//! runs in a private mount namespace whose /etc is a copy, so the host's
//! files are never written. Needs root; fails loudly without it.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::*;

/// A value the global max is not (the limit is read-only in a namespace,
/// so nfkit must refuse to set it).
const WANTED_MAX: &str = "123457";
const LOOSE: &str = "net.netfilter.nf_conntrack_tcp_loose";

fn config(dir: &Path) -> std::path::PathBuf {
    let current = fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap();
    assert_ne!(current.trim(), WANTED_MAX, "pick another WANTED_MAX");
    let path = dir.join("nfkit.toml");
    // nf_conntrack_tcp_loose is per namespace (writable there, 1 by default).
    fs::write(
        &path,
        format!("[conntrack]\nmax = {WANTED_MAX}\n[sysctl]\n\"{LOOSE}\" = 0\n"),
    )
    .unwrap();
    path
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The stderr every mode must show for the refused max.
fn assert_refusal_on_stderr(out: &Output, what: &str) {
    let err = text(&out.stderr);
    assert!(
        err.lines().any(
            |l| l.starts_with("nfkit: error: net.netfilter.nf_conntrack_max stays ")
                && l.contains(&format!(
                    "(wanted {WANTED_MAX}), must be done on the host: "
                ))
                && l.contains("read-only outside the initial namespace")
        ),
        "{what}: stderr lacks the refusal:\n{err}"
    );
    assert!(
        err.contains("hint: run the command on the host"),
        "{what}: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
}

/// Checks the JSON of `boot` or `apply`: the refused max only under
/// `failures`, the per-namespace key under the changes.
fn assert_json(v: &Value, changes_key: &str, what: &str) {
    let changes = v[changes_key].as_array().unwrap();
    assert!(
        !changes
            .iter()
            .any(|c| c["item"] == "net.netfilter.nf_conntrack_max"),
        "{what}: the refused max is listed as a change: {v:#}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["item"] == LOOSE && c["after"] == "0" && c["kind"] == "sysctl"),
        "{what}: {v:#}"
    );
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{what}: {v:#}");
    let f = &failures[0];
    assert_eq!(f["item"], "net.netfilter.nf_conntrack_max", "{what}");
    assert_eq!(f["kind"], "sysctl");
    // Issue 14 §6: the global limits are the host's job.
    assert_eq!(f["outcome"], "must_be_done_on_host");
    assert_eq!(f["wanted"], WANTED_MAX);
    assert!(
        f["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused in this network namespace")
    );
    assert!(f["error"]["hint"].is_string());
    assert!(f["error"]["causes"].is_array());
    assert!(v["remaining"].is_array(), "{what}: {v:#}");
}

#[test]
fn boot_reports_a_refused_limit_as_refused_in_every_mode() {
    in_fresh_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        // Text.
        let out = run(nfkit().arg("--config").arg(&cfg).arg("boot"));
        assert_refusal_on_stderr(&out, "boot");
        let stdout = text(&out.stdout);
        assert!(
            !stdout.contains(WANTED_MAX),
            "boot text claims the max: {stdout}"
        );
        assert!(stdout.contains(&format!("{LOOSE}: 1 -> 0")), "{stdout}");
        // The write really happened in this namespace, the max did not change.
        let loose = ok(&mut tool("sysctl", ["-n", LOOSE]));
        assert_eq!(loose.trim(), "0");
        let max = ok(&mut tool(
            "sysctl",
            ["-n", "net.netfilter.nf_conntrack_max"],
        ));
        assert_ne!(max.trim(), WANTED_MAX);
        // Converged: -q prints nothing on stdout, still the refusal on stderr.
        let out = run(nfkit().arg("-q").arg("--config").arg(&cfg).arg("boot"));
        assert_refusal_on_stderr(&out, "boot -q");
        assert_eq!(text(&out.stdout), "");
        // JSON, from the start again.
        ok(&mut tool("sysctl", ["-qw", &format!("{LOOSE}=1")]));
        let out = run(nfkit().arg("--json").arg("--config").arg(&cfg).arg("boot"));
        assert_refusal_on_stderr(&out, "boot --json");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_json(&v, "changes", "boot --json");
        // JSON with -q: same object, same stderr.
        let out = run(nfkit()
            .args(["--json", "-q", "--config"])
            .arg(&cfg)
            .arg("boot"));
        assert_refusal_on_stderr(&out, "boot --json -q");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["changes"], serde_json::json!([]), "converged: {v:#}");
        assert_eq!(v["failures"][0]["outcome"], "must_be_done_on_host");
    });
}

/// Runs nfkit online in a fresh network namespace and a private mount
/// namespace where `etc` (a copy of the host's /etc) is mounted on /etc.
fn isolated(etc: &Path, args: &[&str]) -> Output {
    require_root();
    let mut c = tool(
        "unshare",
        [
            "--mount",
            "--net",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
        ],
    );
    c.arg("mount --bind \"$0\" /etc && exec \"$@\"")
        .arg(etc)
        .arg(env!("CARGO_BIN_EXE_nfkit"))
        .args(args);
    run(&mut c)
}

fn copy_of_etc(dir: &Path) -> std::path::PathBuf {
    let etc = dir.join("etc");
    ok(Command::new("cp").arg("-a").arg("/etc").arg(&etc));
    etc
}

#[test]
fn apply_reports_a_refused_limit_as_refused_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let cfg = cfg.to_str().unwrap();
    let host_file = Path::new("/etc/sysctl.d/90-nfkit.conf");
    let host_had = host_file.exists();
    for mode in [&[][..], &["-q"][..], &["--json"][..], &["--json", "-q"][..]] {
        let etc = copy_of_etc(dir.path());
        let mut args: Vec<&str> = mode.to_vec();
        args.extend(["--config", cfg, "apply"]);
        let out = isolated(&etc, &args);
        let what = format!("apply {mode:?}");
        assert_refusal_on_stderr(&out, &what);
        let stdout = text(&out.stdout);
        if mode.contains(&"--json") {
            let v: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{what}: invalid JSON ({e}): {stdout}"));
            assert_json(&v, "runtime", &what);
        } else if mode.contains(&"-q") {
            assert_eq!(stdout, "", "{what}");
        } else {
            assert!(
                !stdout.lines().any(|l| l.contains("nf_conntrack_max")
                    && l.contains(WANTED_MAX)
                    && !l.starts_with("not changed")),
                "{what}: the refused max is shown as changed:\n{stdout}"
            );
            assert!(
                stdout.contains("not changed: net.netfilter.nf_conntrack_max"),
                "{what}: {stdout}"
            );
            assert!(
                stdout
                    .lines()
                    .any(|l| l.contains(LOOSE) && l.trim_end().ends_with('0')),
                "{stdout}"
            );
        }
        // The files were written (in the copy), the host's /etc untouched.
        let written = fs::read_to_string(etc.join("sysctl.d/90-nfkit.conf")).unwrap();
        assert!(written.contains(WANTED_MAX), "{written}");
        assert_eq!(host_file.exists(), host_had, "the host's /etc was written");
        fs::remove_dir_all(&etc).unwrap();
    }
}

/// Online dry runs with --persist write nothing either (a private /etc
/// copy is snapshotted before and after).
#[test]
fn online_dry_runs_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let before_cfg = fs::read(&cfg).unwrap();
    let cfg = cfg.to_str().unwrap();
    let etc = copy_of_etc(dir.path());
    let snapshot = || {
        ok(Command::new("find")
            .arg(&etc)
            .args(["-printf", "%p %m %T@ %s\n"]))
    };
    let before = snapshot();
    let current = fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap();
    for args in [
        vec![
            "--config",
            cfg,
            "conntrack",
            "set",
            "--max",
            current.trim(),
            "--persist",
            "--dry-run",
        ],
        vec![
            "--config",
            cfg,
            "modules",
            "load",
            "--dry-run",
            "--persist",
            "nf_conntrack",
        ],
        vec![
            "--config",
            cfg,
            "--json",
            "modules",
            "load",
            "-n",
            "--persist",
            "nf_conntrack",
        ],
        vec!["--config", cfg, "apply", "--check"],
    ] {
        let out = isolated(&etc, &args);
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{args:?}: {out:?}"
        );
        assert!(
            text(&out.stdout).contains("would") || args.contains(&"--json"),
            "{args:?}: {out:?}"
        );
        if args.contains(&"--json") {
            // Online: the command's own report and the persist result, in
            // one JSON object.
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["dry_run"], true, "{v:#}");
            assert!(v["results"].is_array(), "{v:#}");
            assert_eq!(v["persist"]["dry_run"], true, "{v:#}");
            assert_eq!(v["persist"]["apply"]["check"], true, "{v:#}");
        }
        assert_eq!(snapshot(), before, "{args:?} wrote under /etc");
        assert_eq!(
            fs::read(cfg).unwrap(),
            before_cfg,
            "{args:?} wrote nfkit.toml"
        );
    }
}
