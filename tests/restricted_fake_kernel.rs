//! Issue 14 §1 §6 over fake trees: the real Debian kernel tree fixture
//! under a root whose `proc/` and `sys/` play a *running* kernel (a `Host`
//! with `offline = false` over the root), so that the readers of the
//! running kernel's facts — `/proc/cmdline`, `kernel.modules_disabled`,
//! lockdown, `module.sig_enforce`, CapEff, uid_map, `/proc/vz` — are
//! exercised from files, and `modules load` / `boot`'s converge meet the
//! restrictions before any insert. The same cases run on a real kernel in
//! vm-tests/scenarios/restricted.sh (and explain.sh), with modprobe as the
//! oracle. No case here may reach a real insert: each one is refused (or
//! satisfied) before libkmod would call finit_module.

#[path = "support/tree.rs"]
mod tree;

use std::path::PathBuf;

use nfkit::modules::{self, LoadFlags, LoadRequest};
use nfkit::system::Host;
use serde_json::Value;

/// CapEff of a root process with every capability (up to CAP_CHECKPOINT_RESTORE).
const FULL: u64 = 0x1ff_ffff_ffff;
const CAP_SYS_MODULE: u64 = 1 << 16;
const INITIAL_UID_MAP: &str = "         0          0 4294967295\n";

/// The fixture under a new root, with a running kernel's proc/ and sys/:
/// module support, no restriction, nothing enforced.
struct FakeKernel {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl FakeKernel {
    fn new() -> Self {
        let t = tree::kernel_tree();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        t.install_into(&root);
        let k = FakeKernel { _dir: dir, root };
        k.write("proc/sys/kernel/osrelease", &format!("{}\n", t.release));
        k.write("proc/modules", "");
        k.write("proc/cmdline", "root=/dev/vda ro quiet\n");
        k.write("proc/sys/kernel/modules_disabled", "0\n");
        k.write("proc/self/uid_map", INITIAL_UID_MAP);
        k.status(0, FULL);
        k.write(
            "sys/kernel/security/lockdown",
            "[none] integrity confidentiality\n",
        );
        k.write("sys/module/module/parameters/sig_enforce", "N\n");
        k
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn status(&self, uid: u32, cap_eff: u64) {
        self.write(
            "proc/self/status",
            &format!("Name:\tnfkit\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCapEff:\t{cap_eff:016x}\n"),
        );
    }

    /// The root as a running kernel.
    fn host(&self) -> Host {
        let mut h = Host::offline(&self.root);
        h.offline = false;
        h
    }

    /// `modules load NAME` (no options) on the fake running kernel.
    fn load(&self, name: &str, dry_run: bool) -> modules::LoadReport {
        let request = LoadRequest {
            name: name.into(),
            options: Vec::new(),
        };
        let flags = LoadFlags {
            dry_run,
            ..LoadFlags::default()
        };
        modules::load(&self.host(), None, &[request], flags).unwrap()
    }

    fn explain(&self, name: &str) -> Value {
        let r = modules::explain(&self.host(), None, &[name.to_owned()]).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["target"]["live"], true,
            "the fake root must play the running kernel: {v:#}"
        );
        v
    }

    /// Replaces MODULE's file (a hard link into the fixture: replaced, never
    /// written through) by a copy without its signature.
    fn unsign(&self, module: &str) {
        let v = self.explain(module);
        let path = PathBuf::from(v["results"][0]["modules"][0]["path"].as_str().unwrap());
        assert!(path.starts_with(&self.root), "{}", path.display());
        let data = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, strip_signature(&data)).unwrap();
    }
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

/// "OUTCOME KIND,KIND" with the kinds of the reasons that block or send it
/// to the host, sorted.
fn verdict(v: &Value) -> String {
    let r = &v["results"][0];
    let mut kinds: Vec<String> = r["modules"][0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["effect"] == "blocks" || x["effect"] == "host")
        .map(|x| x["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    format!("{} {}", r["outcome"].as_str().unwrap(), kinds.join(","))
}

fn reason<'a>(v: &'a Value, kind: &str) -> &'a Value {
    tree::explain_reason(v, kind)
}

#[test]
fn a_plain_fake_kernel_loads_and_reads_every_fact() {
    let k = FakeKernel::new();
    let v = k.explain("xt_state");
    assert_eq!(verdict(&v), "would_load ", "{v:#}");
    let kernel = &v["kernel"];
    assert_eq!(kernel["module_support"], true, "{v:#}");
    assert_eq!(kernel["modules_disabled"], false);
    assert_eq!(kernel["lockdown"], "none");
    assert_eq!(kernel["sig_enforce"], false);
    assert_eq!(kernel["cap_sys_module"], true);
    assert_eq!(kernel["initial_user_namespace"], true);
}

#[test]
fn modules_disabled_refuses_every_load() {
    let k = FakeKernel::new();
    k.write("proc/sys/kernel/modules_disabled", "1\n");
    let v = k.explain("xt_state");
    assert_eq!(verdict(&v), "refused modules_disabled", "{v:#}");
}

#[test]
fn lockdown_and_sig_enforce_refuse_only_an_unsigned_module() {
    for (file, on, kind) in [
        (
            "sys/kernel/security/lockdown",
            "none [integrity] confidentiality\n",
            "lockdown",
        ),
        (
            "sys/module/module/parameters/sig_enforce",
            "Y\n",
            "signature_enforced",
        ),
    ] {
        let k = FakeKernel::new();
        k.write(file, on);
        let v = k.explain("xt_state");
        assert_eq!(verdict(&v), "would_load ", "signed, {kind}: {v:#}");
        assert_eq!(reason(&v, kind)["effect"], "note", "{v:#}");
        assert_eq!(reason(&v, kind)["signature"], "signed");
        k.unsign("xt_state");
        let v = k.explain("xt_state");
        assert_eq!(verdict(&v), format!("refused {kind}"), "{v:#}");
        assert_eq!(reason(&v, kind)["signature"], "unsigned");
    }
    let k = FakeKernel::new();
    k.write(
        "sys/kernel/security/lockdown",
        "none integrity [confidentiality]\n",
    );
    k.write("sys/module/module/parameters/sig_enforce", "Y\n");
    k.unsign("xt_state");
    let v = k.explain("xt_state");
    assert_eq!(verdict(&v), "refused lockdown,signature_enforced", "{v:#}");
    assert_eq!(reason(&v, "lockdown")["mode"], "confidentiality");
}

#[test]
fn command_line_blacklists() {
    let k = FakeKernel::new();
    // The kernel's own list refuses the module by any name.
    k.write(
        "proc/cmdline",
        "root=/dev/vda module_blacklist=xt_length,xt_state quiet\n",
    );
    let v = k.explain("xt_state");
    assert_eq!(verdict(&v), "refused cmdline_blacklist", "{v:#}");
    assert_eq!(reason(&v, "cmdline_blacklist")["param"], "module_blacklist");
    assert_eq!(
        v["kernel"]["cmdline_module_blacklist"],
        serde_json::json!(["xt_length", "xt_state"])
    );
    // libkmod's list stops only alias loads (as a modprobe.d blacklist).
    k.write(
        "proc/cmdline",
        "root=/dev/vda modprobe.blacklist=xt_state\n",
    );
    let v = k.explain("xt_state");
    assert_eq!(verdict(&v), "would_load ", "by name: {v:#}");
    assert_eq!(reason(&v, "cmdline_blacklist")["applies"], false);
    let v = k.explain("ipt_state");
    assert_eq!(verdict(&v), "refused cmdline_blacklist", "by alias: {v:#}");
    assert_eq!(
        reason(&v, "cmdline_blacklist")["param"],
        "modprobe_blacklist"
    );
}

/// The jails, as files: CapEff / uid_map / /proc/vz, and what explain and
/// a real load say about each.
/// (what, how the files say it, explain's verdict).
type Jail = (&'static str, fn(&FakeKernel), &'static str);

fn jails() -> Vec<Jail> {
    vec![
        (
            "root without CAP_SYS_MODULE",
            |k: &FakeKernel| k.status(0, FULL & !CAP_SYS_MODULE),
            "must_be_done_on_host no_cap_sys_module",
        ),
        (
            "a user namespace",
            |k: &FakeKernel| k.write("proc/self/uid_map", "         0     100000      65536\n"),
            "must_be_done_on_host non_initial_user_namespace",
        ),
    ]
}

#[test]
fn without_cap_sys_module_or_in_a_user_namespace_a_load_is_the_hosts_job() {
    for (what, jail, want) in jails() {
        let k = FakeKernel::new();
        jail(&k);
        let v = k.explain("xt_state");
        assert_eq!(verdict(&v), want, "{what}: {v:#}");
        let r = k.load("xt_state", false);
        assert!(!r.ok(), "{what}");
        let v = serde_json::to_value(&r).unwrap();
        let m = &v["results"][0]["modules"][0];
        assert_eq!(m["outcome"], "failed", "{what}: {v:#}");
        assert_eq!(m["error"]["kind"], "must_be_done_on_host", "{what}: {v:#}");
        assert_eq!(m["error"]["errno"], "EPERM", "{what}: {v:#}");
        assert!(
            m["error"]["hint"]
                .as_str()
                .unwrap()
                .starts_with("load xt_state on the host"),
            "{what}: {v:#}"
        );
        // A dry run plans the insert; where it can happen is explain's.
        let r = k.load("xt_state", true);
        assert!(r.ok(), "{what}: dry run");
    }
}

#[test]
fn an_openvz_container_loads_on_the_hardware_node() {
    let k = FakeKernel::new();
    std::fs::create_dir_all(k.root.join("proc/vz")).unwrap();
    let r = k.load("xt_state", false);
    let v = serde_json::to_value(&r).unwrap();
    let e = &v["results"][0]["modules"][0]["error"];
    assert_eq!(e["kind"], "must_be_done_on_host", "{v:#}");
    assert!(
        e["message"].as_str().unwrap().contains("OpenVZ container"),
        "{v:#}"
    );
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("vzctl set CTID --netfilter"),
        "{v:#}"
    );
}

/// `boot`'s converge in a jail: the module insert and the global conntrack
/// max (read-only: not the initial network namespace) are both the host's.
#[test]
fn converge_in_a_jail_leaves_the_insert_and_the_global_max_to_the_host() {
    use nfkit::persist::desired::Desired;
    use nfkit::persist::runtime::{OptionsFrom, Outcome, converge};
    use std::os::unix::fs::PermissionsExt;
    for (what, jail, _) in jails() {
        let k = FakeKernel::new();
        jail(&k);
        let max = k.root.join("proc/sys/net/netfilter/nf_conntrack_max");
        k.write("proc/sys/net/netfilter/nf_conntrack_max", "262144\n");
        k.write("proc/sys/net/netfilter/nf_conntrack_buckets", "65536\n");
        std::fs::set_permissions(&max, std::fs::Permissions::from_mode(0o444)).unwrap();
        let desired = Desired::parse(
            "nfkit.toml",
            "[modules]\nload = [\"xt_state\"]\n[conntrack]\nmax = 300000\n",
        )
        .unwrap();
        let c = converge(
            &k.host(),
            &desired,
            OptionsFrom::Desired,
            modules::Jobs::auto(),
        );
        let got: Vec<(String, &str)> = c
            .failures()
            .iter()
            .map(|f| (f.change.item.to_string(), f.outcome_name()))
            .collect();
        assert_eq!(
            got,
            [
                ("module xt_state".to_owned(), "must_be_done_on_host"),
                (
                    "net.netfilter.nf_conntrack_max".to_owned(),
                    "must_be_done_on_host"
                ),
            ],
            "{what}: {c:?}"
        );
        assert!(
            c.items
                .iter()
                .all(|(_, o)| matches!(o, Outcome::MustBeDoneOnHost { .. })),
            "{what}"
        );
        assert_eq!(
            std::fs::read_to_string(&max).unwrap(),
            "262144\n",
            "{what}: the max was written"
        );
    }
}

/// gzip of `text`, as the kernel's `CONFIG_IKCONFIG_PROC` serves it.
fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

#[test]
fn the_running_kernels_config_comes_from_proc_config_gz_when_boot_has_none() {
    let k = FakeKernel::new();
    let config = "CONFIG_NETFILTER_XT_MATCH_STATE=m\n# CONFIG_NF_CONNTRACK_FTP is not set\n";
    let gz = k.root.join("proc/config.gz");
    std::fs::write(&gz, gzip(config)).unwrap();
    let v = k.explain("xt_state");
    assert_eq!(v["kernel_config"]["file"], "/proc/config.gz", "{v:#}");
    let c = reason(&v, "kernel_config");
    assert_eq!(c["options"][0]["option"], "CONFIG_NETFILTER_XT_MATCH_STATE");
    assert_eq!(c["options"][0]["value"], "m");

    // /boot/config-<release> of the same kernel wins when it exists.
    let release = &tree::kernel_tree().release;
    k.write(
        &format!("boot/config-{release}"),
        "CONFIG_NETFILTER_XT_MATCH_STATE=y\n",
    );
    let v = k.explain("xt_state");
    assert_eq!(
        v["kernel_config"]["file"],
        format!("/boot/config-{release}"),
        "{v:#}"
    );
    assert_eq!(reason(&v, "kernel_config")["options"][0]["value"], "y");
}

#[test]
fn a_damaged_proc_config_gz_is_named_in_the_note_and_changes_no_verdict() {
    let k = FakeKernel::new();
    let gz = k.root.join("proc/config.gz");
    let mut bytes = gzip(&"CONFIG_NETFILTER_XT_MATCH_STATE=m\n".repeat(100));
    // Cut short: the deflate stream and the CRC/length trailer are missing.
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&gz, &bytes).unwrap();
    let v = k.explain("xt_state");
    assert_eq!(verdict(&v), "would_load ", "{v:#}");
    let note = v["kernel_config"]["note"].as_str().unwrap();
    assert!(
        note.contains("/proc/config.gz not read") && note.contains("not a valid gzip file"),
        "{note}"
    );
    assert!(v["kernel_config"]["file"].is_null(), "{v:#}");
    // A bomb: more text than a configuration file may hold.
    std::fs::write(&gz, gzip(&"#\n".repeat(3 << 20))).unwrap();
    let v = k.explain("xt_state");
    let note = v["kernel_config"]["note"].as_str().unwrap();
    assert!(note.contains("larger than"), "{note}");
}
