//! Persistence on file trees (`--root`): apply writes the expected files, a
//! second run writes nothing, concurrent runs serialise, a run killed at any
//! point leaves each file old or new, import → apply → verify agree, and
//! `--persist` edits nfkit.toml. No privileges needed.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
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
    dir
}

/// Modification times of the files nfkit owns on a systemd root.
fn owned_mtimes(root: &Path) -> Vec<i64> {
    [
        "etc/modules-load.d/nfkit.conf",
        "etc/modprobe.d/nfkit.conf",
        "etc/sysctl.d/90-nfkit.conf",
    ]
    .iter()
    .map(|f| fs::metadata(root.join(f)).unwrap().mtime_nsec())
    .collect()
}

const SEED: &str = "[modules]\nload = [\"xt_state\", \"iptable_nat\"]\n\n[conntrack]\nmax = 500000\nbuckets = 65536\n";

fn with_root(root: &Path) -> Command {
    let mut c = nfkit();
    c.arg("--root").arg(root);
    c
}

#[test]
fn apply_writes_expected_files_and_second_run_writes_nothing() {
    let dir = systemd_root();
    let r = dir.path();
    write(r, "/etc/nfkit/nfkit.toml", SEED);
    let report: Value = serde_json::from_str(&ok(with_root(r).args(["--json", "apply"]))).unwrap();
    assert_eq!(
        report["targets"],
        serde_json::json!(["modules-load.d", "modprobe.d", "sysctl.d"])
    );
    let header =
        "# Managed by nfkit from /etc/nfkit/nfkit.toml: `nfkit apply` replaces this file.\n";
    assert_eq!(
        read(r, "/etc/modules-load.d/nfkit.conf"),
        format!("{header}nf_conntrack\nxt_state\niptable_nat\n")
    );
    assert_eq!(
        read(r, "/etc/modprobe.d/nfkit.conf"),
        format!("{header}options nf_conntrack hashsize=65536\n")
    );
    assert_eq!(
        read(r, "/etc/sysctl.d/90-nfkit.conf"),
        format!("{header}net.netfilter.nf_conntrack_max = 500000\n")
    );
    let mtimes = owned_mtimes(r);
    std::thread::sleep(Duration::from_millis(20));
    let text = ok(with_root(r).arg("apply"));
    assert!(text.contains("nothing to do"), "{text}");
    let after = owned_mtimes(r);
    assert_eq!(mtimes, after, "second apply touched files");
    assert_eq!(
        run(with_root(r).args(["apply", "--check"])).status.code(),
        Some(0)
    );
    assert_eq!(run(with_root(r).arg("verify")).status.code(), Some(0));
}

#[test]
fn check_exits_3_and_diff_shows_changes() {
    let dir = systemd_root();
    let r = dir.path();
    write(r, "/etc/nfkit/nfkit.toml", SEED);
    let out = run(with_root(r).args(["apply", "--check", "--diff"]));
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("+options nf_conntrack hashsize=65536"),
        "{text}"
    );
    assert!(
        !r.join("etc/modprobe.d/nfkit.conf").exists(),
        "--check wrote a file"
    );
    assert_eq!(run(with_root(r).arg("verify")).status.code(), Some(3));
}

#[test]
fn missing_or_bad_config_is_a_clear_error() {
    let dir = systemd_root();
    let r = dir.path();
    let out = run(with_root(r).arg("apply"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nfkit/nfkit.toml: no such file") && err.contains("nfkit import"),
        "{err}"
    );
    write(r, "/etc/nfkit/nfkit.toml", "[conntrack]\nmax = -5\n");
    let out = run(with_root(r).arg("apply"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{out:?}"
    );
    assert!(
        fs::read_dir(r.join("etc/modprobe.d"))
            .unwrap()
            .next()
            .is_none(),
        "nothing may be written"
    );
}

#[test]
fn el_host_iptables_config_keeps_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let original = "# Load additional iptables modules (nat helpers)\n#   Default: -none-\nIPTABLES_MODULES=\"\"\n\n# Unload modules on restart and stop\nIPTABLES_MODULES_UNLOAD=\"yes\"\nIPTABLES_SAVE_ON_STOP=\"no\"\n";
    write(r, "/etc/sysconfig/iptables-config", original);
    // Saved rules: the iptables service loads the list at boot.
    write(r, "/etc/sysconfig/iptables", "*filter\nCOMMIT\n");
    fs::set_permissions(
        r.join("etc/sysconfig/iptables-config"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        "[modules]\nload = [\"ip_conntrack\", \"ipt_state\"]\n",
    );
    ok(with_root(r).arg("apply"));
    let updated = read(r, "/etc/sysconfig/iptables-config");
    assert_eq!(
        updated,
        original.replace(
            "IPTABLES_MODULES=\"\"",
            "IPTABLES_MODULES=\"ip_conntrack ipt_state\""
        )
    );
    let mode = fs::metadata(r.join("etc/sysconfig/iptables-config"))
        .unwrap()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "mode kept");
}

#[test]
fn pcs_import_apply_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "/etc/sysconfig/iptables-config",
        "IPTABLES_MODULES=\"ip_conntrack ipt_state iptable_nat\"\n",
    );
    write(r, "/etc/sysconfig/iptables", "*filter\nCOMMIT\n");
    write(
        r,
        "/etc/modprobe.d/parallels.conf",
        "options ip_conntrack ip_conntrack_disable_ve0=0\n",
    );
    write(r, "/etc/sysctl.conf", "net.nf_conntrack_max = 500000\n");
    let toml = ok(with_root(r).args(["import", "--from", "pcs"]));
    assert!(toml.contains("ip_conntrack → nf_conntrack"), "{toml}");
    write(r, "/etc/nfkit/nfkit.toml", &toml);
    // The files are written, but the max still does not take at boot (below):
    // apply says so and exits 3, as verify does.
    let out = run(with_root(r).arg("apply"));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("still differs: next boot: net.netfilter.nf_conntrack_max"),
        "{out:?}"
    );
    assert_eq!(
        read(r, "/etc/modprobe.d/nfkit.conf").lines().last(),
        Some("options nf_conntrack ip_conntrack_disable_ve0=0")
    );
    assert!(
        read(r, "/etc/sysconfig/iptables-config")
            .contains("IPTABLES_MODULES=\"nf_conntrack xt_state iptable_nat\"")
    );
    // IPTABLES_MODULES load after the sysctls are applied: the max from
    // sysctl.conf cannot take at boot, and verify says so.
    let out = run(with_root(r).args(["--json", "verify"]));
    assert_eq!(out.status.code(), Some(3));
    let verify: Value = serde_json::from_slice(&out.stdout).unwrap();
    let max = verify["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["item"] == "net.netfilter.nf_conntrack_max")
        .unwrap();
    assert_eq!(max["boot"], "500000");
    assert_eq!(max["boot_source"], "/etc/sysctl.conf:1");
    assert!(
        max["notes"].to_string().contains("not loaded at boot"),
        "{max}"
    );
    // The alias-keyed line in parallels.conf is named as a trap.
    assert!(verify.to_string().contains("parallels.conf:1"), "{verify}");
    // With `nfkit boot` hooked into rc.local, the next boot applies everything.
    write(
        r,
        "/etc/rc.d/rc.local",
        "#!/bin/sh
/usr/sbin/nfkit boot
",
    );
    let verify: Value = serde_json::from_str(&ok(with_root(r).args(["--json", "verify"]))).unwrap();
    assert_eq!(verify["ok"], true, "{verify:#}");
    assert!(ok(with_root(r).arg("apply")).contains("nothing to do"));
}

#[test]
fn persist_flags_edit_nfkit_toml_and_write_files() {
    let dir = systemd_root();
    let r = dir.path();
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        "# ops team: keep this comment\n[modules]\nload = [\"xt_state\"]\n",
    );
    ok(with_root(r).args(["conntrack", "set", "--max", "300000", "--persist"]));
    ok(with_root(r).args([
        "modules",
        "load",
        "--persist",
        "nf_nat_ftp",
        "ports=21,2121",
    ]));
    let toml = read(r, "/etc/nfkit/nfkit.toml");
    assert!(toml.contains("# ops team: keep this comment"), "{toml}");
    assert!(
        toml.contains("max = 300000") && toml.contains("nf_nat_ftp"),
        "{toml}"
    );
    assert!(
        read(r, "/etc/sysctl.d/90-nfkit.conf").contains("net.netfilter.nf_conntrack_max = 300000")
    );
    assert!(read(r, "/etc/modules-load.d/nfkit.conf").contains("nf_nat_ftp\n"));
    assert!(read(r, "/etc/modprobe.d/nfkit.conf").contains("options nf_nat_ftp ports=21,2121"));
}

#[test]
fn sysctl_conf_applied_last_is_updated_in_place() {
    // Debian without systemd: procps applies /etc/sysctl.conf after every
    // sysctl.d file, so its line would override nfkit's file: nfkit changes
    // that line's value, and nothing else.
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "/etc/debian_version", "12.5\n");
    write(r, "/etc/modules", "");
    fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
    let conf = "# local tuning\nvm.swappiness=10\nnet.netfilter.nf_conntrack_max = 1000 \n# end\n";
    write(r, "/etc/sysctl.conf", conf);
    write(r, "/etc/nfkit/nfkit.toml", "[conntrack]\nmax = 500000\n");
    let report: Value = serde_json::from_str(&ok(with_root(r).args(["--json", "apply"]))).unwrap();
    assert_eq!(
        report["targets"],
        serde_json::json!(["etc-modules", "sysctl.d", "sysctl.conf"])
    );
    assert_eq!(report["remaining"], serde_json::json!([]));
    assert_eq!(
        read(r, "/etc/sysctl.conf"),
        conf.replace("= 1000 ", "= 500000 ")
    );
    assert!(read(r, "/etc/sysctl.d/90-nfkit.conf").contains("nf_conntrack_max = 500000"));
    assert_eq!(run(with_root(r).arg("verify")).status.code(), Some(0));
    assert!(ok(with_root(r).arg("apply")).contains("nothing to do"));
}

#[test]
fn sysctl_globs_and_exclusions_at_boot_on_a_systemd_root() {
    // A glob applied after nfkit's file does not override its explicit key.
    let dir = systemd_root();
    let r = dir.path();
    write(
        r,
        "/usr/lib/sysctl.d/99-zzz-vendor.conf",
        "net.netfilter.nf_conntrack_* = 7\n",
    );
    write(r, "/etc/nfkit/nfkit.toml", "[conntrack]\nmax = 500000\n");
    let text = ok(with_root(r).arg("apply"));
    assert!(!text.contains("applied after nfkit's file"), "{text}");
    assert!(
        r.join("etc/sysctl.d/90-nfkit.conf").exists(),
        "a glob does not move nfkit's file"
    );
    let out = run(with_root(r).arg("verify"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("wins over any glob"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A `-key` line applied after nfkit's file cancels it: apply warns, verify differs.
    write(
        r,
        "/usr/lib/sysctl.d/99-zzz-vendor.conf",
        "-net.netfilter.nf_conntrack_max\n",
    );
    // apply's word is verify's: the next boot differs, so apply exits 3 and
    // names the line to change.
    let out = run(with_root(r).arg("apply"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("cancels it"), "{text}");
    assert!(
        text.contains(
            "fix: change or remove the setting at /usr/lib/sysctl.d/99-zzz-vendor.conf:1"
        ),
        "{text}"
    );
    let out = run(with_root(r).arg("verify"));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancels it"));
}

#[test]
fn concurrent_applies_serialise() {
    let dir = systemd_root();
    let r = dir.path();
    let configs: Vec<std::path::PathBuf> = (0..2)
        .map(|i| {
            let p = r.join(format!("c{i}.toml"));
            fs::write(
                &p,
                format!(
                    "[modules]\nload = [\"m{i}\"]\n[conntrack]\nmax = {}\n",
                    1000 + i
                ),
            )
            .unwrap();
            p
        })
        .collect();
    for _round in 0..5 {
        let children: Vec<_> = (0..8)
            .map(|k| {
                with_root(r)
                    .arg("--config")
                    .arg(&configs[k % 2])
                    .arg("apply")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        // The last run wrote all files: they describe the same config.
        let list = read(r, "/etc/modules-load.d/nfkit.conf");
        let sysctl = read(r, "/etc/sysctl.d/90-nfkit.conf");
        let i = if list.contains("m0") { 0 } else { 1 };
        assert!(list.contains(&format!("m{i}\n")), "{list}");
        assert!(
            sysctl.contains(&format!("= {}", 1000 + i)),
            "mixed state: {list} / {sysctl}"
        );
    }
}

#[test]
fn killed_runs_leave_old_or_new_files_only() {
    let dir = systemd_root();
    let r = dir.path();
    let old = "# admin's file\nold\n";
    write(r, "/etc/modules-load.d/nfkit.conf", old);
    write(r, "/etc/sysctl.d/90-nfkit.conf", old);
    let new_list = "# Managed by nfkit from /etc/nfkit/nfkit.toml: `nfkit apply` replaces this file.\nnf_conntrack\n";
    let new_sysctl = "# Managed by nfkit from /etc/nfkit/nfkit.toml: `nfkit apply` replaces this file.\nnet.netfilter.nf_conntrack_max = 4242\n";
    write(r, "/etc/nfkit/nfkit.toml", "[conntrack]\nmax = 4242\n");
    // Kill points spread over 0..1.5× the length of one whole run on this
    // machine, so that early, middle and late kills all happen.
    let started = std::time::Instant::now();
    ok(with_root(r).arg("apply"));
    let span = started.elapsed().as_micros().max(1000) as u64 * 3 / 2;
    let mut seen_new = 0;
    // On a loaded machine one timed run says little about the next: when
    // no kill of a round came late enough to see the new files, the next
    // round spreads its kills over twice the span (up to 64×).
    let mut round_span = span;
    for trial in (0..7u64).flat_map(|round| (0..60u64).map(move |t| (round, t))) {
        let (round, trial) = trial;
        if trial == 0 && round > 0 {
            if seen_new > 0 {
                break;
            }
            round_span *= 2;
        }
        // Restore the old state, then kill a run after a varying delay.
        fs::write(r.join("etc/modules-load.d/nfkit.conf"), old).unwrap();
        fs::write(r.join("etc/sysctl.d/90-nfkit.conf"), old).unwrap();
        let mut child = with_root(r)
            .arg("apply")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(trial * round_span / 60));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        for (file, new) in [
            ("etc/modules-load.d/nfkit.conf", new_list),
            ("etc/sysctl.d/90-nfkit.conf", new_sysctl),
        ] {
            let now = fs::read_to_string(r.join(file)).unwrap();
            assert!(
                now == old || now == new,
                "round {round} trial {trial}: {file} is neither old nor new: {now:?}"
            );
            if now == new {
                seen_new += 1;
            }
        }
    }
    assert!(
        seen_new > 0,
        "no trial got far enough to write: the delays are too short to test anything"
    );
    // A later run cleans up what killed runs left behind and converges.
    ok(with_root(r).arg("apply"));
    for d in ["etc/modules-load.d", "etc/sysctl.d"] {
        let leftovers: Vec<_> = fs::read_dir(r.join(d))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".nfkit-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    assert_eq!(read(r, "/etc/sysctl.d/90-nfkit.conf"), new_sysctl);
}

#[test]
fn symlink_out_of_root_is_refused() {
    let dir = systemd_root();
    let r = dir.path();
    let outside = tempfile::tempdir().unwrap();
    fs::remove_dir(r.join("etc/sysctl.d")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../..".to_string() + outside.path().to_str().unwrap(),
        r.join("etc/sysctl.d"),
    )
    .unwrap();
    write(r, "/etc/nfkit/nfkit.toml", SEED);
    let out = run(with_root(r).arg("apply"));
    // The absolute-looking target is taken inside the root: nothing lands outside.
    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "wrote outside the root: {out:?}"
    );
}

/// The EL6/PCS host of issue 9: iptables-config, parallels.conf,
/// net.nf_conntrack_max in /etc/sysctl.conf, no /etc/sysctl.d, no saved
/// rules. After import and a new max, apply must not say "nothing to do".
fn pcs_el6_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "/etc/sysconfig/iptables-config",
        "# Load additional iptables modules (nat helpers)\n#   Default: -none-\nIPTABLES_MODULES=\"\nip_conntrack\nipt_state\niptable_filter\n\"\nIPTABLES_MODULES_UNLOAD=\"no\"\n",
    );
    write(
        r,
        "/etc/modprobe.d/parallels.conf",
        "options ip_conntrack ip_conntrack_disable_ve0=0\n",
    );
    write(
        r,
        "/etc/sysctl.conf",
        "# Kernel sysctl configuration file for Red Hat Linux\n\
         kernel.sysrq = 0\n\
         net.nf_conntrack_max = 500000\n\
         kernel.shmmax = 68719476736\n",
    );
    let toml = ok(with_root(r).arg("import"));
    assert!(toml.contains("max = 500000"), "{toml}");
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        &toml.replace("max = 500000", "max = 600000"),
    );
    dir
}

#[test]
fn pcs_el6_apply_persists_the_max_in_sysctl_conf_and_reports_the_module_gap() {
    let dir = pcs_el6_root();
    let r = dir.path();
    let before = read(r, "/etc/sysctl.conf");
    let out = run(with_root(r).args(["--json", "apply"]));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["targets"],
        serde_json::json!(["modprobe.d", "sysctl.conf", "iptables-config"])
    );
    // sysctl.conf: only the value of that line changed, legacy name kept.
    assert_eq!(
        read(r, "/etc/sysctl.conf"),
        before.replace(
            "net.nf_conntrack_max = 500000",
            "net.nf_conntrack_max = 600000"
        )
    );
    // IPTABLES_MODULES: one module per line, as the admin wrote it.
    assert_eq!(
        read(r, "/etc/sysconfig/iptables-config"),
        "# Load additional iptables modules (nat helpers)\n#   Default: -none-\nIPTABLES_MODULES=\"\nnf_conntrack\nxt_state\niptable_filter\n\"\nIPTABLES_MODULES_UNLOAD=\"no\"\n"
    );
    // Nothing loads the modules at boot: listed with the fix.
    let remaining = report["remaining"].as_array().unwrap();
    let items: Vec<&str> = remaining
        .iter()
        .map(|c| c["item"].as_str().unwrap())
        .collect();
    assert_eq!(
        items,
        [
            "next boot: module nf_conntrack",
            "next boot: module xt_state",
            "next boot: module iptable_filter",
            "next boot: net.netfilter.nf_conntrack_max"
        ]
    );
    let note = remaining[0]["note"].as_str().unwrap();
    for fix in [
        "/etc/rc.d/rc.local",
        "contrib/sysvinit/nfkit",
        "service iptables save",
    ] {
        assert!(note.contains(fix), "{fix}: {note}");
    }
    // apply's word is verify's word; a second apply writes nothing and says
    // the same; --check too.
    assert_eq!(run(with_root(r).arg("verify")).status.code(), Some(3));
    let again: Value =
        serde_json::from_slice(&run(with_root(r).args(["--json", "apply"])).stdout).unwrap();
    assert!(
        again["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "unchanged"),
        "{again:#}"
    );
    assert_eq!(again["remaining"], report["remaining"]);
    assert_eq!(
        run(with_root(r).args(["apply", "--check"])).status.code(),
        Some(3)
    );
}

#[test]
fn pcs_el6_with_a_boot_path_apply_and_verify_agree_on_ok() {
    // `nfkit boot` from rc.local.
    let dir = pcs_el6_root();
    let r = dir.path();
    write(
        r,
        "/etc/rc.d/rc.local",
        "#!/bin/sh\ntouch /var/lock/subsys/local\n/usr/sbin/nfkit boot\n",
    );
    let text = ok(with_root(r).arg("apply"));
    assert!(!text.contains("still differs"), "{text}");
    assert_eq!(run(with_root(r).arg("verify")).status.code(), Some(0));
    assert!(ok(with_root(r).arg("apply")).contains("nothing to do"));
    assert_eq!(
        run(with_root(r).args(["apply", "--check"])).status.code(),
        Some(0)
    );

    // Saved rules: the iptables service loads IPTABLES_MODULES, and the
    // network service applies sysctl.conf after it.
    let dir = pcs_el6_root();
    let r = dir.path();
    write(
        r,
        "/etc/sysconfig/iptables",
        "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
    );
    write(
        r,
        "/etc/rc.d/init.d/network",
        "#!/bin/bash\n# chkconfig: 2345 10 90\n",
    );
    let text = ok(with_root(r).arg("apply"));
    assert!(!text.contains("still differs"), "{text}");
    assert!(read(r, "/etc/sysctl.conf").contains("net.nf_conntrack_max = 600000"));
    assert_eq!(run(with_root(r).arg("verify")).status.code(), Some(0));
    assert!(ok(with_root(r).arg("apply")).contains("nothing to do"));
}

#[test]
fn el6_without_sysctl_conf_gets_one_with_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "/etc/redhat-release", "CentOS release 6.10 (Final)\n");
    write(r, "/etc/rc.d/rc.local", "/usr/sbin/nfkit boot\n");
    write(
        r,
        "/etc/nfkit/nfkit.toml",
        "[conntrack]\nmax = 300000\n[sysctl]\n\"net.netfilter.nf_conntrack_tcp_loose\" = 0\n",
    );
    ok(with_root(r).arg("apply"));
    assert_eq!(
        read(r, "/etc/sysctl.conf"),
        "net.netfilter.nf_conntrack_max = 300000\nnet.netfilter.nf_conntrack_tcp_loose = 0\n"
    );
    assert_eq!(run(with_root(r).arg("verify")).status.code(), Some(0));
}
