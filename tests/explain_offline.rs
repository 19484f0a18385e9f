//! `nfkit --root DIR explain` on the real Debian kernel tree fixture (and
//! overlays with their own modprobe.d, boot config, release names), with
//! kmod's `modprobe --show-depends` as the oracle for what a load does.
//! Running-kernel reasons (modules_disabled, lockdown, sig_enforce,
//! command line, capabilities) are not used offline: they are unit-tested
//! in src/modules/explain.rs, read from a fake running kernel's files in
//! tests/restricted_fake_kernel.rs, and run for real in
//! vm-tests/scenarios/explain.sh and restricted.sh.

#[path = "support/tree.rs"]
mod tree;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use tree::overlay;

fn explain(root: &Path, extra: &[&str], name: &str) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_nfkit"))
        .arg("--json")
        .arg("--root")
        .arg(root)
        .arg("explain")
        .args(extra)
        .arg(name)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain {name}: invalid JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

/// `modprobe --show-depends` lines for NAME in ROOT (the oracle), or None
/// when modprobe fails (not found).
fn modprobe(root: &Path, release: &str, name: &str) -> Option<Vec<String>> {
    let mut cmd = Command::new("modprobe");
    cmd.arg("-d").arg(root).arg("-S").arg(release);
    for d in nfkit::modules::config_dirs(root) {
        cmd.arg("-C").arg(d);
    }
    let out = cmd
        .arg("--show-depends")
        .arg(name)
        .output()
        .expect("cannot run modprobe (kmod is the oracle: install kmod)");
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    })
}

fn kinds(v: &Value) -> Vec<String> {
    let r = &v["results"][0];
    let mut reasons: Vec<&Value> = r["reasons"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for m in r["modules"].as_array().unwrap() {
        reasons.extend(m["reasons"].as_array().unwrap());
    }
    reasons
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn reason<'a>(v: &'a Value, kind: &str) -> &'a Value {
    tree::explain_reason(v, kind)
}

#[test]
fn loadable_module_would_load_and_is_signed() {
    let t = tree::kernel_tree();
    let r = overlay("");
    let oracle = modprobe(&r.root, &t.release, "xt_state").unwrap();
    assert!(
        oracle
            .iter()
            .any(|l| l.starts_with("insmod ") && l.contains("xt_state.ko"))
    );
    let (code, v) = explain(&r.root, &[], "xt_state");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["offline"], true);
    assert!(
        v["kernel"]["modules_disabled"].is_null(),
        "offline: no kernel facts"
    );
    let m = &v["results"][0]["modules"][0];
    assert_eq!(v["results"][0]["outcome"], "would_load");
    assert_eq!(
        m["signature"], "signed",
        "Debian's modules are signed: {m:#}"
    );
    assert_eq!(m["vermagic"], t.release.as_str());
    assert!(kinds(&v).is_empty(), "{v:#}");
}

#[test]
fn blacklist_stops_the_alias_not_the_name() {
    let t = tree::kernel_tree();
    let r = overlay("# test\n\nblacklist xt_state\n");
    // Oracle: the alias shows nothing, the name loads.
    assert_eq!(
        modprobe(&r.root, &t.release, "ipt_state").unwrap(),
        Vec::<String>::new()
    );
    assert!(
        !modprobe(&r.root, &t.release, "xt_state")
            .unwrap()
            .is_empty()
    );
    let (code, v) = explain(&r.root, &[], "ipt_state");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["results"][0]["outcome"], "refused");
    let b = reason(&v, "blacklisted");
    assert_eq!(b["at"]["file"], "/etc/modprobe.d/test.conf");
    assert_eq!(b["at"]["line"], 3);
    assert_eq!(b["applies"], true);
    assert_eq!(v["results"][0]["modules"][0]["via_alias"], true);
    let (code, v) = explain(&r.root, &[], "xt_state");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(reason(&v, "blacklisted")["applies"], false);
    assert_eq!(reason(&v, "blacklisted")["effect"], "note");
}

#[test]
fn install_true_is_disabled_by_policy_with_its_line() {
    let t = tree::kernel_tree();
    let r = overlay("install xt_state /bin/true\n");
    let oracle = modprobe(&r.root, &t.release, "xt_state").unwrap();
    assert_eq!(
        oracle.last().map(String::as_str),
        Some("install /bin/true "),
        "the oracle runs the command instead of inserting: {oracle:?}"
    );
    assert!(
        !oracle.iter().any(|l| l.contains("xt_state.ko")),
        "{oracle:?}"
    );
    let (code, v) = explain(&r.root, &[], "xt_state");
    assert_eq!(code, 1, "{v:#}");
    let i = reason(&v, "install_command");
    assert_eq!(i["disabled_by_policy"], true);
    assert_eq!(i["at"]["line"], 1);
    assert!(
        i["message"]
            .as_str()
            .unwrap()
            .starts_with("disabled by policy")
    );
}

#[test]
fn built_in_module_is_already_satisfied() {
    let t = tree::kernel_tree();
    let r = overlay("");
    let builtin = std::fs::read_to_string(t.moddir().join("modules.builtin")).unwrap();
    let path = builtin.lines().next().unwrap();
    let name = Path::new(path)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .replace('-', "_");
    let oracle = modprobe(&r.root, &t.release, &name).unwrap();
    assert_eq!(oracle, vec![format!("builtin {name}")]);
    let (code, v) = explain(&r.root, &[], &name);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["results"][0]["outcome"], "already_satisfied");
    assert!(
        reason(&v, "built_in")["evidence"]
            .as_str()
            .unwrap()
            .contains("modules.builtin")
    );
}

#[test]
fn unknown_name_and_missing_tree_are_unavailable() {
    let t = tree::kernel_tree();
    let r = overlay("");
    assert!(modprobe(&r.root, &t.release, "xt_nfkit_none").is_none());
    let (code, v) = explain(&r.root, &[], "xt_nfkit_none");
    assert_eq!(code, 1);
    assert_eq!(v["results"][0]["outcome"], "unavailable");
    assert_eq!(v["results"][0]["reasons"][0]["kind"], "not_in_tree");
    assert_eq!(v["results"][0]["reasons"][0]["module_dir_exists"], true);
    // A release without a tree (a container's view of the host kernel).
    let (code, v) = explain(&r.root, &["--kernel-release", "9.9.9-none"], "xt_state");
    assert_eq!(code, 1);
    assert_eq!(v["module_dir_exists"], false);
    assert_eq!(
        v["results"][0]["reasons"][0]["module_dir_exists"], false,
        "{v:#}"
    );
}

#[test]
fn another_release_name_is_a_vermagic_mismatch() {
    let t = tree::kernel_tree();
    let r = overlay("");
    let other = "6.1.0-99-amd64";
    std::fs::rename(
        r.root.join("lib/modules").join(&t.release),
        r.root.join("lib/modules").join(other),
    )
    .unwrap();
    let (code, v) = explain(&r.root, &[], "xt_state");
    assert_eq!(code, 1, "{v:#}");
    let m = reason(&v, "vermagic_mismatch");
    assert_eq!(m["module"], t.release.as_str());
    assert_eq!(m["kernel"], other);
}

/// Strips the appended signature (payload, `struct module_signature` whose
/// last 4 bytes are the big-endian signature length, the 28-byte mark).
fn strip_signature(data: &[u8]) -> Vec<u8> {
    let mark = b"~Module signature appended~\n";
    assert!(data.ends_with(mark));
    let end = data.len() - mark.len();
    let sig_len = u32::from_be_bytes(data[end - 4..end].try_into().unwrap()) as usize;
    data[..end - 12 - sig_len].to_vec()
}

#[test]
fn unsigned_module_file_is_reported() {
    let r = overlay("");
    let (_, v) = explain(&r.root, &[], "xt_state");
    let path = PathBuf::from(v["results"][0]["modules"][0]["path"].as_str().unwrap());
    let data = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap(); // a hard link to the fixture: replace, never write through
    std::fs::write(&path, strip_signature(&data)).unwrap();
    let (code, v) = explain(&r.root, &[], "xt_state");
    assert_eq!(
        code, 0,
        "offline: enforcement unknown, the load is not refused: {v:#}"
    );
    assert_eq!(v["results"][0]["modules"][0]["signature"], "unsigned");
}

#[test]
fn kernel_config_is_read_from_boot() {
    let t = tree::kernel_tree();
    let r = overlay("");
    let (_, v) = explain(&r.root, &[], "xt_state");
    assert!(
        v["kernel_config"]["note"]
            .as_str()
            .unwrap()
            .contains("absent"),
        "{v:#}"
    );
    std::fs::create_dir_all(r.root.join("boot")).unwrap();
    std::fs::write(
        r.root.join(format!("boot/config-{}", t.release)),
        "CONFIG_NETFILTER_XT_MATCH_STATE=m\n# CONFIG_NF_CONNTRACK_NFKIT is not set\n",
    )
    .unwrap();
    let (_, v) = explain(&r.root, &[], "xt_state");
    let c = reason(&v, "kernel_config");
    assert_eq!(c["options"][0]["option"], "CONFIG_NETFILTER_XT_MATCH_STATE");
    assert_eq!(c["options"][0]["value"], "m");
    let (_, v) = explain(&r.root, &[], "nf_conntrack_nfkit");
    let nit = &v["results"][0]["reasons"][0];
    assert_eq!(nit["config"][0]["value"], "not set", "{v:#}");
    assert!(
        nit["message"]
            .as_str()
            .unwrap()
            .contains("CONFIG_NF_CONNTRACK_NFKIT is not set")
    );
}

#[test]
fn text_output_says_offline_and_names_each_reason() {
    let r = overlay("blacklist xt_state\n");
    let out = Command::new(env!("CARGO_BIN_EXE_nfkit"))
        .arg("--root")
        .arg(&r.root)
        .args(["explain", "ipt_state", "nf_conntrack_ftp"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("(offline:"), "{text}");
    assert!(
        text.contains("ipt_state -> xt_state: would be refused"),
        "{text}"
    );
    assert!(text.contains("/etc/modprobe.d/test.conf:1"), "{text}");
    assert!(
        text.contains("nf_conntrack_ftp -> nf_conntrack_ftp: would load"),
        "{text}"
    );
    // Offline the helper check cannot see rules: it says so.
    assert!(text.contains("not read: offline"), "{text}");
}

/// Issue 14 §2 offline: the rules of a root cannot be read, so a helper
/// module (desired in nfkit.toml, or explained) is `uncertain`, never
/// `assigned`; explain and verify agree.
#[test]
fn helper_assessment_offline_is_uncertain_in_explain_and_verify() {
    let r = overlay("");
    let (code, v) = explain(&r.root, &[], "nf_conntrack_ftp");
    assert_eq!(code, 0, "{v:#}");
    let h = &v["results"][0]["helper"];
    assert_eq!(h["helpers"], serde_json::json!(["ftp"]), "{v:#}");
    assert_eq!(
        (&h["assigned"], &h["uncertain"]),
        (&Value::Bool(false), &Value::Bool(true))
    );
    std::fs::create_dir_all(r.root.join("etc/nfkit")).unwrap();
    std::fs::write(
        r.root.join("etc/nfkit/nfkit.toml"),
        "[modules]\nload = [\"nf_conntrack_ftp\", \"xt_state\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nfkit"))
        .arg("--json")
        .arg("--root")
        .arg(&r.root)
        .arg("verify")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let helpers = v["helpers"].as_array().unwrap();
    assert_eq!(helpers.len(), 1, "only the helper module: {v:#}");
    assert_eq!(helpers[0]["module"], "nf_conntrack_ftp");
    assert_eq!(helpers[0]["uncertain"], true, "{v:#}");
    assert_eq!(helpers[0]["assigned"], false, "{v:#}");
    assert_eq!(h["fix"], helpers[0]["fix"], "the same fix in both");
}
