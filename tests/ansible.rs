//! The collection `nfkit.netfilter` driven by a real `ansible-playbook`
//! (issue 13). ansible-core comes from PyPI into a cached venv
//! (/var/cache/nfkit/ansible-venv, made by `tests/support/ansible-venv`);
//! the collection is built by its own `build` script (from this test's
//! binary, stripped) and installed from the tarball, as a user would. Three
//! "machines" on this one: each a root directory (the modules' `root`, an
//! offline image of a host kind) plus its own network namespace (`ip netns
//! exec` as `ansible_shell_executable`); every play starts with a guard that
//! refuses the controller's namespace.
//! Needs root, `ip`, python3 with venv, and PyPI (first run only): fails
//! loudly otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const MODULES: [&str; 5] = ["apply", "verify", "facts", "import", "kmod"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cached venv with ansible-core, made by `tests/support/ansible-venv`
/// (shared with the vm-tests scenario `ansible`, which ships its packages
/// into the guest).
fn venv() -> PathBuf {
    let out = ok(&mut Command::new(repo().join("tests/support/ansible-venv")));
    PathBuf::from(
        out.lines()
            .last()
            .expect("ansible-venv prints its path")
            .trim(),
    )
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let _ = run(Command::new("ip").args(["netns", "del", &name]));
        ok(Command::new("ip").args(["netns", "add", &name]));
        Netns(name)
    }
    fn inode(&self) -> String {
        ok(Command::new("ip").args(["netns", "exec", &self.0, "readlink", "/proc/self/ns/net"]))
            .trim()
            .to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.0]));
    }
}

/// Every file under `dir` with its bytes (the "nothing written" check).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), Vec::new());
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A host kind's offline image.
fn make_root(dir: &Path, kind: &str) {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    let d = |rel: &str| fs::create_dir_all(dir.join(rel)).unwrap();
    match kind {
        "systemd" => {
            d("run/systemd/system");
            d("etc/modprobe.d");
            d("etc/sysctl.d");
            w("etc/debian_version", "12.8\n");
        }
        "debian" => {
            w("etc/debian_version", "12.8\n");
            w(
                "etc/modules",
                "# /etc/modules: kernel modules to load at boot time.\nloop\n",
            );
            d("etc/modprobe.d");
            w("etc/sysctl.conf", "# site settings\nvm.swappiness = 10\n");
        }
        "pcs" => {
            w("etc/redhat-release", "Virtuozzo release 7.5\n");
            w(
                "etc/sysconfig/iptables-config",
                "# Load additional iptables modules\nIPTABLES_MODULES=\"\"\nIPTABLES_SAVE_ON_STOP=\"no\"\n",
            );
            // Saved rules: the iptables service loads IPTABLES_MODULES
            // only when they exist.
            w(
                "etc/sysconfig/iptables",
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
            );
            // The network service applies the sysctl files again after
            // the iptables service has loaded the modules.
            w("etc/rc.d/init.d/network", "#!/bin/bash\n");
            d("etc/modprobe.d");
            w("etc/sysctl.conf", "# site settings\nkernel.sysrq = 0\n");
        }
        other => panic!("unknown host kind {other}"),
    }
}

struct Fleet {
    _dir: tempfile::TempDir,
    venv: PathBuf,
    collections: PathBuf,
    inventory: PathBuf,
    roots: BTreeMap<&'static str, PathBuf>,
    netns: Vec<Netns>,
}

const HOSTS: [(&str, &str); 3] = [
    ("h-systemd", "systemd"),
    ("h-debian", "debian"),
    ("h-pcs", "pcs"),
];

/// Builds the collection with its `build` script and installs the tarball.
fn build_and_install(venv: &Path, dir: &Path) -> PathBuf {
    let binary = dir.join("nfkit");
    fs::copy(env!("CARGO_BIN_EXE_nfkit"), &binary).unwrap();
    ok(Command::new("strip").arg(&binary));
    let script = repo().join("contrib/ansible/nfkit/netfilter/build");
    let built = ok(Command::new(&script)
        .env("NFKIT_BINARY", &binary)
        .env("ANSIBLE_GALAXY", venv.join("bin/ansible-galaxy")));
    let tarball = PathBuf::from(built.lines().last().unwrap().trim());
    assert!(
        tarball.ends_with(format!(
            "target/ansible/nfkit-netfilter-{}.tar.gz",
            env!("CARGO_PKG_VERSION")
        )),
        "{built}"
    );
    let collections = dir.join("collections");
    ok(Command::new(venv.join("bin/ansible-galaxy"))
        .args(["collection", "install", "--force", "-p"])
        .arg(&collections)
        .arg(&tarball));
    for m in MODULES {
        let installed = collections.join("ansible_collections/nfkit/netfilter/plugins/modules");
        assert!(installed.join(m).is_file(), "{m} not in the tarball");
        assert!(installed.join(format!("{m}.yml")).is_file());
    }
    collections
}

impl Fleet {
    fn new() -> Fleet {
        let venv = venv();
        let dir = tempfile::tempdir().unwrap();
        let collections = build_and_install(&venv, dir.path());
        let controller = fs::read_link("/proc/self/ns/net")
            .unwrap()
            .display()
            .to_string();
        let mut inventory = String::from("[fleet]\n");
        let mut roots = BTreeMap::new();
        let mut netns = Vec::new();
        for (i, (host, kind)) in HOSTS.iter().enumerate() {
            let root = dir.path().join(host);
            make_root(&root, kind);
            let ns = Netns::new(format!("nfkit-ans-{}-{i}", std::process::id()));
            let inode = ns.inode();
            assert_ne!(
                inode, controller,
                "a fresh namespace is not the controller's"
            );
            let shell = dir.path().join(format!("sh-{host}"));
            fs::write(
                &shell,
                format!("#!/bin/sh\nexec ip netns exec {} /bin/sh \"$@\"\n", ns.0),
            )
            .unwrap();
            ok(Command::new("chmod").arg("0755").arg(&shell));
            let modules = match *kind {
                "pcs" => r#"["ip_conntrack_ftp", "ipt_state"]"#,
                _ => r#"["nf_conntrack_ftp", "xt_state"]"#,
            };
            inventory.push_str(&format!(
                "{host} nfkit_root={root} expected_netns='{inode}' ansible_shell_executable={shell} nfkit_modules='{modules}'\n",
                root = root.display(),
                shell = shell.display(),
            ));
            roots.insert(*host, root);
            netns.push(ns);
        }
        inventory.push_str(&format!(
            "\n[fleet:vars]\nansible_connection=local\nansible_python_interpreter={}\ncontroller_netns='{controller}'\n",
            venv.join("bin/python").display()
        ));
        let inv = dir.path().join("inventory");
        fs::write(&inv, inventory).unwrap();
        Fleet {
            _dir: dir,
            venv,
            collections,
            inventory: inv,
            roots,
            netns,
        }
    }

    fn ansible(&self, program: &str) -> Command {
        let mut c = Command::new(self.venv.join("bin").join(program));
        c.env("ANSIBLE_COLLECTIONS_PATH", &self.collections)
            .env("ANSIBLE_STDOUT_CALLBACK", "nfkit_json")
            .env(
                "ANSIBLE_CALLBACK_PLUGINS",
                repo().join("tests/ansible/callback_plugins"),
            )
            .env("ANSIBLE_HOST_KEY_CHECKING", "false")
            .env("ANSIBLE_LOCAL_TEMP", self._dir.path().join("ansible-local"))
            .env(
                "ANSIBLE_REMOTE_TMP",
                self._dir.path().join("ansible-remote"),
            )
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORKS", "3")
            .current_dir(repo().join("tests/ansible"));
        c
    }

    /// Runs a playbook; returns its exit status and the json callback's
    /// report.
    fn playbook(&self, book: &str, extra: &[&str]) -> (i32, Value) {
        let mut cmd = self.ansible("ansible-playbook");
        cmd.arg("-i").arg(&self.inventory).arg(book).args(extra);
        let out = run(&mut cmd);
        let text = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{book}: no JSON report ({e}):\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        self.roots.values().flat_map(|r| snapshot(r)).collect()
    }
}

/// `stats[host][field]`.
fn stat(report: &Value, host: &str, field: &str) -> u64 {
    report["stats"][host][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats.{host}.{field} in {report:#}"))
}

/// The result of the task named `task` on `host`.
fn task<'a>(report: &'a Value, task: &str, host: &str) -> &'a Value {
    report["plays"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["tasks"].as_array().unwrap())
        .find(|t| t["task"]["name"] == task)
        .map(|t| &t["hosts"][host])
        .unwrap_or_else(|| panic!("no task {task:?} in {report:#}"))
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn fleet_converges_with_ansible_playbook() {
    let fleet = Fleet::new();
    let hosts: Vec<&str> = HOSTS.iter().map(|(h, _)| *h).collect();

    // ansible-doc renders every module's sidecar documentation.
    for m in MODULES {
        let doc = ok(fleet.ansible("ansible-doc").args([
            "-t",
            "module",
            &format!("nfkit.netfilter.{m}"),
        ]));
        assert!(doc.contains(&format!("nfkit.netfilter.{m}")), "{doc}");
        assert!(doc.contains("OPTIONS") || doc.contains("options"), "{doc}");
    }

    guard_refuses_the_controllers_namespace(&fleet);

    // ansible-test sanity on the installed collection. Skipped: the tests
    // that install their requirements with pip bootstrapped from
    // ci-files.testing.ansible.com (unreachable here): validate-modules,
    // runtime-metadata, yamllint. (validate-modules would read the ELF
    // modules as Python: tests/sanity/ignore-X.Y.txt skips it for them.)
    let python = ok(Command::new(fleet.venv.join("bin/python")).args([
        "-c",
        "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
    ]));
    let sanity = ok(fleet
        .ansible("ansible-test")
        .current_dir(
            fleet
                .collections
                .join("ansible_collections/nfkit/netfilter"),
        )
        .args(["sanity", "--python", python.trim()])
        .args(["--skip-test", "validate-modules"])
        .args(["--skip-test", "runtime-metadata"])
        .args(["--skip-test", "yamllint"]));
    for t in ["ansible-doc", "ignores", "shebang", "line-endings"] {
        assert!(
            sanity.contains(&format!("Running sanity test \"{t}\"")),
            "{sanity}"
        );
    }

    // 1. --check --diff on fresh hosts: every host changed, diffs shown,
    //    nothing written anywhere.
    let before = fleet.snapshot();
    let (code, report) = fleet.playbook("apply.yml", &["--check", "--diff"]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        assert_eq!(stat(&report, h, "changed"), 1, "{h}: {report:#}");
        let r = task(&report, "apply the desired state", h);
        assert_eq!(r["changed"], true, "{h}: {r:#}");
        let diffs = r["diff"].as_array().unwrap_or_else(|| panic!("{h}: {r:#}"));
        assert!(
            diffs
                .iter()
                .any(|d| d["prepared"].as_str().is_some_and(|p| p.contains("+++"))),
            "{h}: {r:#}"
        );
        assert!(
            diffs.iter().any(|d| d["prepared"]
                .as_str()
                .is_some_and(|p| p.contains("nfkit.toml"))),
            "{h}: write_config shows nfkit.toml's diff: {r:#}"
        );
    }
    assert_eq!(before, fleet.snapshot(), "check mode wrote files");

    // 2. A real run converges every host, each in its own layout.
    let (code, report) = fleet.playbook("apply.yml", &[]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        assert_eq!(stat(&report, h, "changed"), 1, "{h}: {report:#}");
        assert_eq!(stat(&report, h, "failures"), 0, "{h}: {report:#}");
        let root = &fleet.roots[h];
        assert!(read(root, "etc/nfkit/nfkit.toml").contains("max = 262144"));
        assert!(
            read(root, "etc/modprobe.d/nfkit.conf").contains("hashsize=65536"),
            "{h}"
        );
    }
    let sd = &fleet.roots["h-systemd"];
    assert!(read(sd, "etc/modules-load.d/nfkit.conf").contains("xt_state"));
    assert!(read(sd, "etc/sysctl.d/90-nfkit.conf").contains("nf_conntrack_max = 262144"));
    let deb = &fleet.roots["h-debian"];
    let etc_modules = read(deb, "etc/modules");
    assert!(
        etc_modules.starts_with("# /etc/modules: kernel modules to load at boot time.\nloop\n")
    );
    assert!(etc_modules.contains("xt_state"), "{etc_modules}");
    assert!(read(deb, "etc/sysctl.conf").contains("vm.swappiness = 10"));
    let pcs = &fleet.roots["h-pcs"];
    let ipt = read(pcs, "etc/sysconfig/iptables-config");
    assert!(ipt.contains("IPTABLES_MODULES=\""), "{ipt}");
    assert!(
        ipt.contains("IPTABLES_MODULES=\"nf_conntrack ip_conntrack_ftp ipt_state\""),
        "{ipt}"
    );
    assert!(ipt.contains("IPTABLES_SAVE_ON_STOP=\"no\""), "{ipt}");

    // 3. A second run changes nothing on any host.
    let converged = fleet.snapshot();
    let (code, report) = fleet.playbook("apply.yml", &[]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        assert_eq!(stat(&report, h, "changed"), 0, "{h}: {report:#}");
    }
    assert_eq!(converged, fleet.snapshot());

    // 4. Drift on one host: verify reports that host only; apply fixes it.
    let (code, report) = fleet.playbook("verify.yml", &[]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        let v = task(&report, "verify against the host's nfkit.toml", h);
        assert_eq!(v["drift"], false, "{h}: {v:#}");
        assert_eq!(v["changed"], false);
        // facts read the host's own namespace, never the controller's.
        let f = task(&report, "facts of the host's own namespace", h);
        let ns = &f["ansible_facts"]["nfkit"]["network_namespace"];
        assert!(ns.is_object(), "{h}: {f:#}");
        // import runs and changes nothing (nfkit's own files are not
        // legacy configuration: nothing else is there to import).
        let i = task(&report, "import the host's configuration", h);
        assert_eq!(i["changed"], false, "{h}: {i:#}");
        assert_ne!(i["failed"], true, "{h}: {i:#}");
        assert!(
            i["toml"]
                .as_str()
                .unwrap()
                .starts_with("# nfkit.toml imported by `nfkit import`"),
            "{h}: {i:#}"
        );
    }
    let conf = sd.join("etc/sysctl.d/90-nfkit.conf");
    let drifted = read(sd, "etc/sysctl.d/90-nfkit.conf").replace("262144", "1000");
    fs::write(&conf, drifted).unwrap();
    let (code, report) = fleet.playbook("verify.yml", &[]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        let v = task(&report, "verify against the host's nfkit.toml", h);
        assert_eq!(v["drift"], *h == "h-systemd", "{h}: {v:#}");
    }
    let v = task(&report, "verify against the host's nfkit.toml", "h-systemd");
    assert!(
        v["msg"].as_str().unwrap().contains("nf_conntrack_max"),
        "{v:#}"
    );
    let (code, report) = fleet.playbook("apply.yml", &["--diff"]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        assert_eq!(
            stat(&report, h, "changed"),
            u64::from(*h == "h-systemd"),
            "{h}: {report:#}"
        );
    }
    assert_eq!(converged, fleet.snapshot(), "apply restored the file");

    // 5. Unknown arguments and bad values fail clearly; nothing changes.
    for (case, args, expect) in [
        (
            "unknown argument",
            r#"{"modulez": ["xt_state"]}"#,
            "unsupported argument modulez",
        ),
        (
            "bad module name",
            r#"{"modules": ["xt state"]}"#,
            "invalid module name",
        ),
        (
            "bad conntrack max",
            r#"{"conntrack": {"max": "lots"}}"#,
            "conntrack.max",
        ),
        (
            "unknown conntrack key",
            r#"{"conntrack": {"maximum": 5}}"#,
            "conntrack.maximum",
        ),
        (
            "config and inline",
            r#"{"config": "/etc/nfkit/nfkit.toml", "modules": ["xt_state"]}"#,
            "cannot be combined",
        ),
    ] {
        let extra = format!(r#"{{"bad_case": "{case}", "bad_args": {args}}}"#);
        let (code, report) = fleet.playbook("bad_args.yml", &["-e", &extra]);
        assert_ne!(code, 0, "{case}: {report:#}");
        for h in &hosts {
            let r = task(&report, case, h);
            assert_eq!(r["failed"], true, "{case} {h}: {r:#}");
            assert_eq!(r["changed"], false, "{case} {h}: {r:#}");
            let msg = r["msg"].as_str().unwrap();
            assert!(msg.contains(expect), "{case} {h}: {msg}");
        }
        if case == "unknown argument" {
            let r = task(&report, case, "h-pcs");
            assert!(
                r["hint"]
                    .as_str()
                    .unwrap()
                    .contains("valid arguments: config, conntrack"),
                "{r:#}"
            );
        }
        assert_eq!(converged, fleet.snapshot(), "{case}: changed files");
    }

    // 6. kmod persistent=present: nfkit.toml and the boot files gain the
    //    module and its parameter; check mode first writes nothing.
    let (code, report) = fleet.playbook("kmod.yml", &["--check", "--diff"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(converged, fleet.snapshot(), "kmod check wrote files");
    for h in &hosts {
        assert_eq!(stat(&report, h, "changed"), 1, "{h}: {report:#}");
    }
    let (code, report) = fleet.playbook("kmod.yml", &[]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        assert_eq!(stat(&report, h, "changed"), 1, "{h}: {report:#}");
        let root = &fleet.roots[h];
        assert!(
            read(root, "etc/modprobe.d/nfkit.conf").contains("ports=2121"),
            "{h}"
        );
    }
    let (code, report) = fleet.playbook("kmod.yml", &[]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        assert_eq!(stat(&report, h, "changed"), 0, "{h}: {report:#}");
    }

    // 7. kmod on the running kernel (each host's namespace): a built-in
    //    module is present; a parameter that differs on it is shown in
    //    check mode and fails a real run; the kernel keeps its value.
    let current = fs::read_to_string("/sys/module/nf_conntrack/parameters/expect_hashsize")
        .expect("nf_conntrack is built into the test machine's kernel")
        .trim()
        .to_string();
    let extra = format!("expect_hashsize={current}");
    let (code, report) = fleet.playbook("kmod_live.yml", &["-e", &extra]);
    assert_eq!(code, 0, "{report:#}");
    for h in &hosts {
        for t in ["built-in module is present", "same parameter value"] {
            let r = task(&report, t, h);
            assert_eq!(r["changed"], false, "{t} {h}: {r:#}");
            assert_ne!(r["failed"], true, "{t} {h}: {r:#}");
        }
        let r = task(&report, "other parameter value, check mode", h);
        assert_eq!(r["changed"], true, "{h}: {r:#}");
        let d = &r["diff"][0];
        assert!(
            d["before"]
                .as_str()
                .unwrap()
                .contains(&format!("expect_hashsize = {current}")),
            "{h}: {r:#}"
        );
        let r = task(&report, "other parameter value", h);
        assert_eq!(r["failed"], true, "{h}: {r:#}");
        assert!(
            r["msg"].as_str().unwrap().contains("expect_hashsize"),
            "{h}: {r:#}"
        );
    }
    assert_eq!(
        fs::read_to_string("/sys/module/nf_conntrack/parameters/expect_hashsize")
            .unwrap()
            .trim(),
        current
    );
    drop(fleet.netns);
}

/// The guard itself: a host whose tasks would run in the controller's
/// namespace (no `ip netns exec` shell) is refused before any nfkit task.
fn guard_refuses_the_controllers_namespace(fleet: &Fleet) {
    let root = fleet._dir.path().join("h-wrong");
    make_root(&root, "systemd");
    let controller = fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let inv = fleet._dir.path().join("inventory-wrong");
    fs::write(
        &inv,
        format!(
            "[fleet]\nh-wrong nfkit_root={} expected_netns='net:[0]' controller_netns='{controller}' nfkit_modules='[\"xt_state\"]' ansible_connection=local ansible_python_interpreter={}\n",
            root.display(),
            fleet.venv.join("bin/python").display()
        ),
    )
    .unwrap();
    let before = snapshot(&root);
    let out = run(fleet
        .ansible("ansible-playbook")
        .arg("-i")
        .arg(&inv)
        .arg("apply.yml"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("refusing to run"), "{text}");
    assert_eq!(before, snapshot(&root));
}
