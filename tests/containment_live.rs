//! Issue 14 §6 on the real kernel of this machine (netfilter built in, no
//! loadable module support, no `/lib/modules/<release>`), each test in a
//! fresh network namespace: nfkit run without CAP_SYS_MODULE (`setpriv`
//! drops it from the bounding set) and in a new user namespace (`unshare
//! -U -r`), as a container would run it. A built-in module is "already
//! satisfied" there — `modules load` succeeds, `explain` exits 0, `boot`
//! does not list it — while a global conntrack limit is "must be done on
//! the host" (the limits are read-only outside the initial network
//! namespace). The refusal of a real insert needs a kernel with modules:
//! vm-tests scenario `restricted`.

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

/// How a container runs nfkit.
#[derive(Debug, Clone, Copy)]
enum Jail {
    /// Root without CAP_SYS_MODULE.
    NoCapSysModule,
    /// Root of a new user namespace (all capabilities, none that count for
    /// the kernel's module loader).
    UserNamespace,
}

const JAILS: [Jail; 2] = [Jail::NoCapSysModule, Jail::UserNamespace];

/// `program` run in `jail` (its arguments added by the caller).
fn in_jail(jail: Jail, program: &str) -> Command {
    match jail {
        Jail::NoCapSysModule => tool(
            "setpriv",
            [
                "--bounding-set",
                "-sys_module",
                "--inh-caps",
                "-sys_module",
                "--",
                program,
            ],
        ),
        Jail::UserNamespace => tool("unshare", ["-U", "-r", "--", program]),
    }
}

fn jailed(jail: Jail, args: &[&str]) -> Command {
    let mut c = in_jail(jail, env!("CARGO_BIN_EXE_nfkit"));
    c.args(args);
    c
}

fn json(jail: Jail, args: &[&str]) -> (Value, Option<i32>, String) {
    let out = run(&mut jailed(jail, args));
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{jail:?} {args:?}: invalid JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        v,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The machine these tests describe: nf_conntrack built in, no module tree.
fn precondition() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        std::path::Path::new("/sys/module/nf_conntrack").is_dir()
            && !std::path::Path::new("/sys/module/nf_conntrack/initstate").exists(),
        "these tests need nf_conntrack built into the kernel"
    );
    assert!(
        !std::path::Path::new("/lib/modules").join(&release).exists(),
        "these tests prove 'already satisfied without a module tree': \
         /lib/modules/{release} must not exist on this machine"
    );
    release
}

#[test]
fn the_jail_really_lacks_what_a_module_load_needs() {
    // The oracle: /proc/self/status and uid_map as the jailed shell sees them.
    for jail in JAILS {
        let mut c = in_jail(jail, "cat");
        c.args(["/proc/self/status", "/proc/self/uid_map"]);
        let text = ok(&mut c);
        let cap_eff = text
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        let uid_map = text.lines().last().unwrap();
        match jail {
            Jail::NoCapSysModule => {
                assert_eq!(cap_eff & (1 << 16), 0, "{text}");
                assert!(uid_map.contains("4294967295"), "{text}");
            }
            Jail::UserNamespace => {
                assert_ne!(cap_eff & (1 << 16), 0, "{text}");
                assert!(!uid_map.contains("4294967295"), "{text}");
            }
        }
    }
}

#[test]
fn a_built_in_module_is_already_satisfied_without_the_capability_or_a_tree() {
    precondition();
    in_fresh_netns(|| {
        for jail in JAILS {
            let (v, code, err) = json(jail, &["--json", "modules", "load", "nf_conntrack"]);
            assert_eq!(code, Some(0), "{jail:?}: {v:#} {err}");
            assert_eq!(v["results"][0]["ok"], true, "{jail:?}: {v:#}");
            assert_eq!(
                v["results"][0]["modules"][0]["outcome"], "builtin",
                "{jail:?}: {v:#}"
            );
            let (v, code, err) = json(jail, &["--json", "explain", "nf_conntrack"]);
            assert_eq!(code, Some(0), "{jail:?}: {v:#} {err}");
            assert_eq!(
                v["results"][0]["outcome"], "already_satisfied",
                "{jail:?}: {v:#}"
            );
            assert_eq!(v["module_dir_exists"], false, "{jail:?}: {v:#}");
            let want_cap = match jail {
                Jail::NoCapSysModule => false,
                Jail::UserNamespace => true,
            };
            assert_eq!(v["kernel"]["cap_sys_module"], want_cap, "{jail:?}: {v:#}");
            assert_eq!(
                v["kernel"]["initial_user_namespace"], !want_cap,
                "{jail:?}: {v:#}"
            );
        }
    });
}

#[test]
fn boot_in_a_jail_leaves_the_global_limit_to_the_host_and_counts_the_built_in_module() {
    precondition();
    in_fresh_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("nfkit.toml");
        let max: u64 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let wanted = (max + 4096).to_string();
        std::fs::write(
            &cfg,
            format!("[modules]\nload = [\"nf_conntrack\"]\n[conntrack]\nmax = {wanted}\n"),
        )
        .unwrap();
        for jail in JAILS {
            let (v, code, err) = json(jail, &["--json", "--config", cfg.to_str().unwrap(), "boot"]);
            assert_eq!(code, Some(1), "{jail:?}: {v:#} {err}");
            let failures = v["failures"].as_array().unwrap();
            assert_eq!(failures.len(), 1, "{jail:?}: {v:#}");
            assert_eq!(failures[0]["item"], "net.netfilter.nf_conntrack_max");
            assert_eq!(
                failures[0]["outcome"], "must_be_done_on_host",
                "{jail:?}: {v:#}"
            );
            assert!(
                err.contains("must be done on the host")
                    && err.contains("hint: run the command on the host"),
                "{jail:?}: {err}"
            );
            let now: u64 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert_eq!(now, max, "{jail:?}: the global limit changed");
        }
    });
}

/// `explain` on this machine reads the running kernel's config from
/// `/proc/config.gz` (there is no `/boot/config-<release>` here), and
/// every option it reports has the value `zcat` finds there.
#[test]
fn explain_reads_the_running_kernels_config_from_proc_config_gz() {
    let release = precondition();
    assert!(
        std::path::Path::new("/proc/config.gz").is_file(),
        "this test needs a kernel with CONFIG_IKCONFIG_PROC (/proc/config.gz)"
    );
    assert!(
        !std::path::Path::new(&format!("/boot/config-{release}")).exists(),
        "with /boot/config-{release} present nfkit reads that file instead"
    );
    let oracle = ok(&mut tool("zcat", ["/proc/config.gz"]));
    let names = ["nf_conntrack", "nf_conntrack_ftp", "xt_state", "nf_tables"];
    // xt_state is built in without a /sys/module entry here: explain calls
    // it unavailable (exit 1), with the config's `=y` in its reason.
    let out = run(nfkit().args(["--json", "explain"]).args(names));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kernel_config"]["file"], "/proc/config.gz", "{v:#}");
    let mut seen = 0;
    for r in v["results"].as_array().unwrap() {
        let reasons = r["reasons"]
            .as_array()
            .into_iter()
            .chain(r["modules"].as_array().into_iter().flat_map(|m| {
                m.iter()
                    .filter_map(|m| m["reasons"].as_array())
                    .collect::<Vec<_>>()
            }))
            .flatten();
        for reason in reasons {
            let hits = reason["options"]
                .as_array()
                .or_else(|| reason["config"].as_array());
            for hit in hits.into_iter().flatten() {
                let option = hit["option"].as_str().unwrap();
                let want = match hit["value"].as_str().unwrap() {
                    "not set" => format!("# {option} is not set"),
                    value => format!("{option}={value}"),
                };
                assert!(
                    oracle.lines().any(|l| l == want),
                    "{want} is not in /proc/config.gz: {v:#}"
                );
                seen += 1;
            }
        }
    }
    assert!(
        seen >= names.len(),
        "every name here has its option in this kernel's config: {v:#}"
    );
}
