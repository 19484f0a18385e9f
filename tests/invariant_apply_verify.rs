//! The central promise of nfkit as a property (issue 9): **apply's word is
//! verify's word**, on every kind of host.
//!
//! Over generated host layouts (systemd, Debian with and without systemd,
//! EL7 with sysctl.d, EL6/PCS without sysctl.d, with and without
//! `/etc/sysconfig/iptables`, busybox; with or without an `nfkit boot` hook)
//! × generated desired states (modules incl. 2.6-era names, module options
//! incl. alias-keyed ones, conntrack max/buckets, extra `[sysctl]` keys,
//! sometimes explicit `[persist] targets`) × pre-existing files that agree
//! with the desired state, disagree with it or override it (later sysctl.d
//! files, vendor directories, `/etc/sysctl.conf` with the legacy key,
//! modprobe.d options in other files, `IPTABLES_MODULES` in several layouts,
//! `/etc/modules` with or without nfkit's block, broken files), running the
//! real binary offline (`--root`):
//!
//! 1. `apply --check` writes nothing; its exit code is 1 exactly when apply's is.
//! 2. A failed apply (exit 1) changes nothing.
//! 3. After `apply` exits 0, `verify` exits 0; after it exits 3 (something it
//!    cannot make the next boot do), `verify` exits 3 too.
//! 4. A second `apply` writes nothing (same bytes, inodes and mtimes, files and
//!    directories) and exits as the first did.
//! 5. `apply --check` exits 0 exactly when `apply` would change nothing and
//!    exit 0; whenever apply would change a file, it exits 3. Checked before
//!    and after applying.
//!
//! An offline root needs nothing under `proc/` or `sys/`: with `--root`,
//! apply and verify read only files (no netlink, no /proc writes).
//!
//! Cases: `PROPTEST_CASES` (default 128, about 20 s in debug on 2 cores).
//! Failing seeds are kept in `tests/proptest-regressions/` and replayed
//! first; minimal failing cases found so far are also spelled out as plain
//! tests at the end of this file.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};
use support::{nfkit, run};

// ---------------------------------------------------------------------------
// Host layouts

/// The kind of host: decides the base files of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// systemd (no Debian marks): modules-load.d, modprobe.d, sysctl.d.
    Systemd,
    /// Debian with systemd: also `/etc/modules` (linked from
    /// modules-load.d/modules.conf) and `99-sysctl.conf -> ../sysctl.conf`.
    DebianSystemd,
    /// Debian with sysvinit: `/etc/modules`, modprobe.d, sysctl.d, sysctl.conf.
    DebianSysv,
    /// EL7: systemd, iptables-config, modprobe.d, sysctl.d with
    /// `99-sysctl.conf -> ../sysctl.conf`.
    El7,
    /// EL6 / PCS (Parallels/Virtuozzo): upstart, iptables-config,
    /// modprobe.d/parallels.conf, sysctl.conf, **no sysctl.d**.
    El6Pcs,
    /// busybox: `/etc/modules` only.
    Busybox,
}

/// Where `nfkit boot` is hooked into the boot, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// rc.local runs `nfkit boot`.
    RcLocal,
    /// rc.local mentions it in a comment only (not a hook).
    RcLocalCommentedOut,
    /// The shipped init script is installed.
    InitScript,
    /// The shipped systemd unit is enabled.
    SystemdUnit,
}

#[derive(Debug, Clone)]
struct HostSpec {
    kind: Kind,
    /// systemd detected through `/run/systemd/system` rather than `/sbin/init`.
    systemd_via_run: bool,
    /// `/etc/sysconfig/iptables` (saved rules) exists: the iptables service
    /// then loads `IPTABLES_MODULES` at boot.
    iptables_rules: bool,
    hook: Option<Hook>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Systemd),
        Just(Kind::DebianSystemd),
        Just(Kind::DebianSysv),
        Just(Kind::El7),
        Just(Kind::El6Pcs),
        Just(Kind::Busybox),
    ]
}

fn host() -> impl Strategy<Value = HostSpec> {
    let hook = prop_oneof![
        6 => Just(None),
        2 => Just(Some(Hook::RcLocal)),
        1 => Just(Some(Hook::RcLocalCommentedOut)),
        1 => Just(Some(Hook::InitScript)),
        1 => Just(Some(Hook::SystemdUnit)),
    ];
    (kind(), any::<bool>(), any::<bool>(), hook).prop_map(
        |(kind, systemd_via_run, iptables_rules, hook)| HostSpec {
            kind,
            systemd_via_run,
            iptables_rules,
            hook,
        },
    )
}

// ---------------------------------------------------------------------------
// Desired states

/// A module option value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Int(u32),
    Text(&'static str),
}

impl Val {
    fn toml(self) -> String {
        match self {
            Val::Int(n) => n.to_string(),
            Val::Text(t) => format!("\"{t}\""),
        }
    }
    fn plain(self) -> String {
        match self {
            Val::Int(n) => n.to_string(),
            Val::Text(t) => t.to_string(),
        }
    }
}

const MODULES: [&str; 9] = [
    "nf_conntrack",
    "xt_state",
    "iptable_nat",
    "ip_conntrack",
    "ip_conntrack_ftp",
    "nf_conntrack_ftp",
    "xt_conntrack",
    "ipt_state",
    "nf_nat",
];

/// (module as written in nfkit.toml, parameter, possible values).
const OPTIONS: [(&str, &str, &[Val]); 7] = [
    (
        "nf_conntrack",
        "expect_hashsize",
        &[Val::Int(1024), Val::Int(4096)],
    ),
    (
        "nf_conntrack",
        "hashsize",
        &[Val::Int(16384), Val::Int(65536)],
    ),
    (
        "ip_conntrack",
        "hashsize",
        &[Val::Int(16384), Val::Int(65536)],
    ),
    ("ip_conntrack", "ip_conntrack_disable_ve0", &[Val::Int(0)]),
    ("nf_conntrack", "acct", &[Val::Int(0), Val::Int(1)]),
    ("nf_conntrack_ftp", "ports", &[Val::Text("21,2121")]),
    ("ip_conntrack_ftp", "ports", &[Val::Text("21")]),
];

/// (key as written in `[sysctl]`, possible values). The same kernel key may
/// appear spelled with dots and with slashes.
const SYSCTLS: [(&str, &[u32]); 5] = [
    (
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        &[86400, 432000],
    ),
    ("net.netfilter.nf_conntrack_tcp_loose", &[0, 1]),
    ("net.netfilter.nf_conntrack_udp_timeout", &[30, 60]),
    ("net/netfilter/nf_conntrack_udp_timeout", &[30, 60]),
    ("net.netfilter.nf_log_all_netns", &[1]),
];

const MAXES: [u32; 4] = [65536, 262144, 500000, 600000];
const BUCKETS: [u32; 3] = [16384, 65536, 100000];
const TARGETS: [&str; 5] = [
    "modules-load.d",
    "etc-modules",
    "modprobe.d",
    "sysctl.d",
    "iptables-config",
];

#[derive(Debug, Clone)]
struct DesiredSpec {
    load: Vec<&'static str>,
    /// (module, parameter, value).
    options: Vec<(&'static str, &'static str, Val)>,
    max: Option<u32>,
    buckets: Option<u32>,
    sysctl: Vec<(&'static str, u32)>,
    /// Explicit `[persist] targets`.
    targets: Option<Vec<&'static str>>,
}

fn pick<T: Copy + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

fn desired() -> impl Strategy<Value = DesiredSpec> {
    let option =
        pick(&OPTIONS[..]).prop_flat_map(|(m, p, vals)| pick(vals).prop_map(move |v| (m, p, v)));
    let sysctl = pick(&SYSCTLS[..]).prop_flat_map(|(k, vals)| pick(vals).prop_map(move |v| (k, v)));
    let targets = prop_oneof![
        5 => Just(None),
        1 => proptest::sample::subsequence(&TARGETS[..], 0..=TARGETS.len())
            .prop_shuffle()
            .prop_map(Some),
    ];
    (
        proptest::collection::vec(pick(&MODULES[..]), 0..4),
        proptest::collection::vec(option, 0..3),
        proptest::option::weighted(0.7, pick(&MAXES[..])),
        proptest::option::weighted(0.5, pick(&BUCKETS[..])),
        proptest::collection::vec(sysctl, 0..3),
        targets,
    )
        .prop_map(|(load, options, max, buckets, sysctl, targets)| {
            let mut d = DesiredSpec {
                load,
                options,
                max,
                buckets,
                sysctl,
                targets,
            };
            // Keep the state valid: nfkit.toml refuses an nf_conntrack
            // hashsize that contradicts conntrack.buckets.
            if let Some(b) = d.buckets {
                d.options.retain(|&(m, p, v)| {
                    !(m == "nf_conntrack" && p == "hashsize" && v != Val::Int(b))
                });
            }
            d
        })
}

impl DesiredSpec {
    fn toml(&self) -> String {
        let mut out = String::new();
        if !self.load.is_empty() || !self.options.is_empty() {
            let names: Vec<String> = self.load.iter().map(|m| format!("\"{m}\"")).collect();
            let _ = writeln!(out, "[modules]\nload = [{}]", names.join(", "));
            let mut by_module: BTreeMap<&str, BTreeMap<&str, Val>> = BTreeMap::new();
            for &(m, p, v) in &self.options {
                by_module.entry(m).or_default().insert(p, v);
            }
            for (m, opts) in by_module {
                let _ = writeln!(out, "\n[modules.options.{m}]");
                for (p, v) in opts {
                    let _ = writeln!(out, "{p} = {}", v.toml());
                }
            }
            out.push('\n');
        }
        if self.max.is_some() || self.buckets.is_some() {
            out.push_str("[conntrack]\n");
            if let Some(m) = self.max {
                let _ = writeln!(out, "max = {m}");
            }
            if let Some(b) = self.buckets {
                let _ = writeln!(out, "buckets = {b}");
            }
            out.push('\n');
        }
        if !self.sysctl.is_empty() {
            let by_key: BTreeMap<&str, u32> = self.sysctl.iter().copied().collect();
            out.push_str("[sysctl]\n");
            for (k, v) in by_key {
                let _ = writeln!(out, "\"{k}\" = {v}");
            }
            out.push('\n');
        }
        if let Some(t) = &self.targets {
            let names: Vec<String> = t.iter().map(|t| format!("\"{t}\"")).collect();
            let _ = writeln!(out, "[persist]\ntargets = [{}]", names.join(", "));
        }
        out
    }

    /// The desired value of a sysctl key (any spelling), if any.
    fn sysctl_value(&self, key: &str) -> Option<u32> {
        let norm = |k: &str| {
            k.trim_start_matches('-')
                .replace('/', ".")
                .replace("net.nf_conntrack_max", "net.netfilter.nf_conntrack_max")
        };
        let key = norm(key);
        if key == "net.netfilter.nf_conntrack_max" {
            return self.max;
        }
        if key.ends_with('*') {
            let prefix = key.trim_end_matches('*');
            return self
                .sysctl
                .iter()
                .find(|(k, _)| norm(k).starts_with(prefix))
                .map(|&(_, v)| v);
        }
        self.sysctl
            .iter()
            .rev()
            .find(|(k, _)| norm(k) == key)
            .map(|&(_, v)| v)
    }

    /// The desired value of a module parameter (by real module name), if any.
    fn option_value(&self, module: &str, parameter: &str) -> Option<Val> {
        let real = |m: &str| m.replace("ip_conntrack", "nf_conntrack");
        if real(module) == "nf_conntrack" && parameter == "hashsize" {
            if let Some(b) = self.buckets {
                return Some(Val::Int(b));
            }
        }
        self.options
            .iter()
            .rev()
            .find(|(m, p, _)| real(m) == real(module) && *p == parameter)
            .map(|&(_, _, v)| v)
    }
}

// ---------------------------------------------------------------------------
// Pre-existing files

/// A value in a pre-existing file: the desired one (agrees) or another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pre<T> {
    Agree,
    Other(T),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SysDir {
    Etc,
    Run,
    UsrLib,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModDir {
    Etc,
    UsrLib,
}

#[derive(Debug, Clone)]
enum EtcModules {
    /// Plain module lines.
    Plain(Vec<&'static str>),
    /// nfkit's block (possibly stale) between other lines.
    Block {
        before: Vec<&'static str>,
        inside: Vec<&'static str>,
    },
    /// A BEGIN marker without END (apply must refuse and change nothing).
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    OneLine,
    Continuation,
    SingleQuoted,
    Missing,
    /// An unterminated quote (apply must refuse and change nothing).
    Broken,
}

#[derive(Debug, Clone)]
enum PreFile {
    /// A sysctl.d file.
    Sysctl {
        dir: SysDir,
        name: &'static str,
        lines: Vec<(&'static str, Pre<u32>)>,
    },
    /// Lines appended to `/etc/sysctl.conf`.
    SysctlConf(Vec<(&'static str, Pre<u32>)>),
    /// A modprobe.d file with `options` lines.
    Modprobe {
        dir: ModDir,
        name: &'static str,
        lines: Vec<(&'static str, &'static str, Pre<Val>)>,
    },
    /// A modules-load.d file.
    ModulesLoad {
        dir: ModDir,
        name: &'static str,
        modules: Vec<&'static str>,
    },
    /// `/etc/modules` contents.
    EtcModules(EtcModules),
    /// The `IPTABLES_MODULES` line of iptables-config.
    IptablesModules(Vec<&'static str>, Style),
}

const SYSCTL_KEYS: [&str; 9] = [
    "net.netfilter.nf_conntrack_max",
    "net.nf_conntrack_max",
    "net/netfilter/nf_conntrack_max",
    "-net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_*",
    "net.netfilter.nf_conntrack_tcp_loose",
    "net.netfilter.nf_conntrack_udp_timeout",
    "net.netfilter.nf_log_all_netns",
];
const SYSCTL_VALUES: [u32; 7] = [0, 1, 60, 86400, 262144, 500000, 600000];
const SYSCTL_NAMES: [&str; 8] = [
    "10-local.conf",
    "50-default.conf",
    "90-nfkit.conf",
    "95-conntrack.conf",
    "99-sysctl.conf",
    "99-zz-nfkit.conf",
    "99-zzz-local.conf",
    "zz-late.conf",
];
const MODPROBE_MODULES: [&str; 3] = ["nf_conntrack", "ip_conntrack", "nf_conntrack_ftp"];
const MODPROBE_PARAMS: [&str; 4] = ["hashsize", "expect_hashsize", "acct", "ports"];
const MODPROBE_VALUES: [Val; 4] = [
    Val::Int(1024),
    Val::Int(65536),
    Val::Int(1),
    Val::Text("21"),
];
const MODPROBE_NAMES: [&str; 4] = ["00-local.conf", "nfkit.conf", "parallels.conf", "zz.conf"];
const LIST_NAMES: [&str; 3] = ["local.conf", "nfkit.conf", "modules.conf"];

fn pre<T: Copy + std::fmt::Debug + 'static>(others: &'static [T]) -> impl Strategy<Value = Pre<T>> {
    prop_oneof![Just(Pre::Agree), pick(others).prop_map(Pre::Other)]
}

fn sysctl_lines() -> impl Strategy<Value = Vec<(&'static str, Pre<u32>)>> {
    proptest::collection::vec((pick(&SYSCTL_KEYS[..]), pre(&SYSCTL_VALUES[..])), 1..3)
}

fn modules_list() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(pick(&MODULES[..]), 0..3)
}

fn pre_file() -> impl Strategy<Value = PreFile> {
    let sys_dir =
        prop_oneof![3 => Just(SysDir::Etc), 1 => Just(SysDir::Run), 2 => Just(SysDir::UsrLib)];
    let mod_dir = prop_oneof![3 => Just(ModDir::Etc), 1 => Just(ModDir::UsrLib)];
    let style = prop_oneof![
        4 => Just(Style::OneLine),
        2 => Just(Style::Continuation),
        1 => Just(Style::SingleQuoted),
        1 => Just(Style::Missing),
        1 => Just(Style::Broken),
    ];
    let etc_modules = prop_oneof![
        3 => modules_list().prop_map(EtcModules::Plain),
        3 => (modules_list(), modules_list())
            .prop_map(|(before, inside)| EtcModules::Block { before, inside }),
        1 => Just(EtcModules::Broken),
    ];
    prop_oneof![
        3 => (sys_dir, pick(&SYSCTL_NAMES[..]), sysctl_lines())
            .prop_map(|(dir, name, lines)| PreFile::Sysctl { dir, name, lines }),
        3 => sysctl_lines().prop_map(PreFile::SysctlConf),
        3 => (
            mod_dir.clone(),
            pick(&MODPROBE_NAMES[..]),
            proptest::collection::vec(
                (pick(&MODPROBE_MODULES[..]), pick(&MODPROBE_PARAMS[..]), pre(&MODPROBE_VALUES[..])),
                1..3
            )
        )
            .prop_map(|(dir, name, lines)| PreFile::Modprobe { dir, name, lines }),
        2 => (mod_dir, pick(&LIST_NAMES[..]), modules_list())
            .prop_map(|(dir, name, modules)| PreFile::ModulesLoad { dir, name, modules }),
        2 => etc_modules.prop_map(PreFile::EtcModules),
        2 => (modules_list(), style).prop_map(|(w, s)| PreFile::IptablesModules(w, s)),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    host: HostSpec,
    desired: DesiredSpec,
    files: Vec<PreFile>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        host(),
        desired(),
        proptest::collection::vec(pre_file(), 0..4),
    )
        .prop_map(|(host, desired, files)| Case {
            host,
            desired,
            files,
        })
}

// ---------------------------------------------------------------------------
// Building the tree

const EL_IPTABLES_CONFIG: &str = "# Load additional iptables modules (nat helpers)\n#   Default: -none-\n\
IPTABLES_MODULES=\"\"\n\n# Unload modules on restart and stop\nIPTABLES_MODULES_UNLOAD=\"yes\"\n\
IPTABLES_SAVE_ON_STOP=\"no\"\n";

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn append(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    f.write_all(text.as_bytes()).unwrap();
}

fn dir(root: &Path, rel: &str) {
    fs::create_dir_all(root.join(rel.trim_start_matches('/'))).unwrap();
}

fn link(root: &Path, target: &str, rel: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

impl Case {
    fn systemd(&self) -> bool {
        matches!(
            self.host.kind,
            Kind::Systemd | Kind::DebianSystemd | Kind::El7
        )
    }

    /// Builds the tree (and nfkit.toml) under `root`.
    fn build(&self, root: &Path) {
        let h = &self.host;
        if self.systemd() {
            if h.systemd_via_run {
                dir(root, "/run/systemd/system");
            } else {
                put(root, "/lib/systemd/systemd", "");
                link(root, "/lib/systemd/systemd", "/sbin/init");
            }
        } else if h.kind != Kind::Busybox {
            put(root, "/sbin/init", "");
        }
        match h.kind {
            Kind::Systemd => {
                for d in ["/etc/modules-load.d", "/etc/modprobe.d", "/etc/sysctl.d"] {
                    dir(root, d);
                }
            }
            Kind::DebianSystemd => {
                put(root, "/etc/debian_version", "12.5\n");
                put(
                    root,
                    "/etc/modules",
                    "# /etc/modules: kernel modules to load at boot time.\n",
                );
                link(root, "../modules", "/etc/modules-load.d/modules.conf");
                put(
                    root,
                    "/etc/sysctl.conf",
                    "# /etc/sysctl.conf - Configuration file for setting system variables\n",
                );
                link(root, "../sysctl.conf", "/etc/sysctl.d/99-sysctl.conf");
                dir(root, "/etc/modprobe.d");
            }
            Kind::DebianSysv => {
                put(root, "/etc/debian_version", "12.5\n");
                put(
                    root,
                    "/etc/modules",
                    "# /etc/modules: kernel modules to load at boot time.\n",
                );
                put(
                    root,
                    "/etc/sysctl.conf",
                    "#kernel.domainname = example.com\n",
                );
                dir(root, "/etc/sysctl.d");
                dir(root, "/etc/modprobe.d");
            }
            Kind::El7 => {
                put(
                    root,
                    "/etc/redhat-release",
                    "CentOS Linux release 7.9.2009 (Core)\n",
                );
                put(root, "/etc/sysconfig/iptables-config", EL_IPTABLES_CONFIG);
                put(
                    root,
                    "/etc/sysctl.conf",
                    "# System default settings live in /usr/lib/sysctl.d/00-system.conf.\n",
                );
                link(root, "../sysctl.conf", "/etc/sysctl.d/99-sysctl.conf");
                dir(root, "/etc/modules-load.d");
                dir(root, "/etc/modprobe.d");
            }
            Kind::El6Pcs => {
                put(root, "/etc/redhat-release", "CentOS release 6.10 (Final)\n");
                put(root, "/etc/sysconfig/iptables-config", EL_IPTABLES_CONFIG);
                put(
                    root,
                    "/etc/modprobe.d/parallels.conf",
                    "options ip_conntrack ip_conntrack_disable_ve0=0\n",
                );
                put(
                    root,
                    "/etc/sysctl.conf",
                    "# Kernel sysctl configuration file\nnet.ipv4.ip_forward = 0\n",
                );
            }
            Kind::Busybox => put(root, "/etc/modules", ""),
        }
        if h.iptables_rules {
            put(
                root,
                "/etc/sysconfig/iptables",
                "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
            );
        }
        let rc_local = if h.kind == Kind::El6Pcs {
            "/etc/rc.d/rc.local"
        } else {
            "/etc/rc.local"
        };
        match h.hook {
            None => {}
            Some(Hook::RcLocal) => put(root, rc_local, "#!/bin/sh\n/usr/sbin/nfkit boot\nexit 0\n"),
            Some(Hook::RcLocalCommentedOut) => put(
                root,
                rc_local,
                "#!/bin/sh\n# /usr/sbin/nfkit boot\nexit 0\n",
            ),
            Some(Hook::InitScript) => put(root, "/etc/init.d/nfkit", "#!/bin/sh\n"),
            Some(Hook::SystemdUnit) => put(
                root,
                "/etc/systemd/system/sysinit.target.wants/nfkit-boot.service",
                "[Service]\n",
            ),
        }
        for f in &self.files {
            self.build_file(root, f);
        }
        put(root, "/etc/nfkit/nfkit.toml", &self.desired.toml());
    }

    fn sysctl_text(&self, lines: &[(&'static str, Pre<u32>)]) -> String {
        let mut text = String::new();
        for &(key, value) in lines {
            let v = match value {
                Pre::Agree => self.desired.sysctl_value(key).unwrap_or(1),
                Pre::Other(v) => v,
            };
            let _ = writeln!(text, "{key} = {v}");
        }
        text
    }

    fn build_file(&self, root: &Path, file: &PreFile) {
        match file {
            PreFile::Sysctl { dir, name, lines } => {
                let d = match dir {
                    SysDir::Etc => "/etc/sysctl.d",
                    SysDir::Run => "/run/sysctl.d",
                    SysDir::UsrLib => "/usr/lib/sysctl.d",
                };
                append(root, &format!("{d}/{name}"), &self.sysctl_text(lines));
            }
            PreFile::SysctlConf(lines) => {
                append(root, "/etc/sysctl.conf", &self.sysctl_text(lines))
            }
            PreFile::Modprobe { dir, name, lines } => {
                let d = match dir {
                    ModDir::Etc => "/etc/modprobe.d",
                    ModDir::UsrLib => "/usr/lib/modprobe.d",
                };
                let mut text = String::new();
                for &(module, param, value) in lines {
                    let v = match value {
                        Pre::Agree => self
                            .desired
                            .option_value(module, param)
                            .unwrap_or(Val::Int(1)),
                        Pre::Other(v) => v,
                    };
                    let _ = writeln!(text, "options {module} {param}={}", v.plain());
                }
                append(root, &format!("{d}/{name}"), &text);
            }
            PreFile::ModulesLoad { dir, name, modules } => {
                let d = match dir {
                    ModDir::Etc => "/etc/modules-load.d",
                    ModDir::UsrLib => "/usr/lib/modules-load.d",
                };
                let text: String = modules.iter().map(|m| format!("{m}\n")).collect();
                append(root, &format!("{d}/{name}"), &text);
            }
            PreFile::EtcModules(content) => {
                let mut text = String::new();
                match content {
                    EtcModules::Plain(modules) => {
                        for m in modules {
                            let _ = writeln!(text, "{m}");
                        }
                    }
                    EtcModules::Block { before, inside } => {
                        for m in before {
                            let _ = writeln!(text, "{m}");
                        }
                        text.push_str(
                            "# BEGIN nfkit: managed block, edits between these lines are replaced\n",
                        );
                        for m in inside {
                            let _ = writeln!(text, "{m}");
                        }
                        text.push_str("# END nfkit\nloop\n");
                    }
                    EtcModules::Broken => text.push_str(
                        "# BEGIN nfkit: managed block, edits between these lines are replaced\nxt_state\n",
                    ),
                }
                append(root, "/etc/modules", &text);
            }
            PreFile::IptablesModules(words, style) => {
                let joined = words.join(" ");
                let line = match style {
                    Style::OneLine => format!("IPTABLES_MODULES=\"{joined}\"\n"),
                    Style::Continuation => {
                        format!("IPTABLES_MODULES=\"{}\"\n", words.join(" \\\n    "))
                    }
                    Style::SingleQuoted => format!("IPTABLES_MODULES='{joined}'\n"),
                    Style::Missing => String::new(),
                    Style::Broken => format!("IPTABLES_MODULES=\"{joined}\n"),
                };
                let text = EL_IPTABLES_CONFIG.replace("IPTABLES_MODULES=\"\"\n", &line);
                put(root, "/etc/sysconfig/iptables-config", &text);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Observing the tree

/// Everything that a write would change about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    inode: u64,
    mtime: (i64, i64),
    /// File contents or symlink target.
    data: Vec<u8>,
}

type Snapshot = BTreeMap<PathBuf, Entry>;

fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).unwrap();
        let ft = meta.file_type();
        let (kind, data) = if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if ft.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            ("dir", Vec::new())
        } else {
            ("file", fs::read(&p).unwrap())
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            Entry {
                kind,
                mode: meta.mode(),
                inode: meta.ino(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                data,
            },
        );
    }
    out
}

/// What differs between two snapshots, for messages.
fn changes(a: &Snapshot, b: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (p, e) in a {
        match b.get(p) {
            None => out.push(format!("removed {}", p.display())),
            Some(f) if f.data != e.data => out.push(format!("rewrote {}", p.display())),
            Some(f) if f != e => out.push(format!("touched {}", p.display())),
            _ => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("created {}", p.display()));
    }
    out
}

/// The tree as text (files and symlinks), for messages.
fn listing(root: &Path) -> String {
    let mut out = String::new();
    for (p, e) in snapshot(root) {
        match e.kind {
            "file" => {
                let _ = writeln!(out, "--- /{}", p.display());
                out.push_str(&String::from_utf8_lossy(&e.data));
            }
            "symlink" => {
                let _ = writeln!(
                    out,
                    "--- /{} -> {}",
                    p.display(),
                    String::from_utf8_lossy(&e.data)
                );
            }
            _ => {}
        }
    }
    out
}

struct Ran {
    what: &'static str,
    code: i32,
    output: Output,
}

impl Ran {
    fn text(&self) -> String {
        format!(
            "$ nfkit --root R {} -> exit {}\n{}{}",
            self.what,
            self.code,
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }
}

fn nfkit_at(root: &Path, what: &'static str) -> Ran {
    let output = run(nfkit().arg("--root").arg(root).args(what.split(' ')));
    let code = output
        .status
        .code()
        .unwrap_or_else(|| panic!("nfkit {what} was killed: {:?}", output.status));
    Ran { what, code, output }
}

// ---------------------------------------------------------------------------
// The property

/// Runs the whole sequence on one case; `Err` names the broken promise.
fn check(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    case.build(root);
    let initial = listing(root);
    let mut log = Vec::new();
    let fail = |promise: &str, log: &[&Ran]| {
        let mut msg = format!(
            "{promise}\n\n=== nfkit.toml\n{}\n=== tree before\n{initial}\n",
            case.desired.toml()
        );
        for r in log {
            let _ = writeln!(msg, "=== {}", r.text());
        }
        Err(msg)
    };

    let s0 = snapshot(root);
    let check0 = nfkit_at(root, "apply --check");
    log.push(check0);
    if snapshot(root) != s0 {
        return fail(
            &format!("apply --check wrote: {:?}", changes(&s0, &snapshot(root))),
            &log.iter().collect::<Vec<_>>(),
        );
    }
    let apply1 = nfkit_at(root, "apply");
    log.push(apply1);
    let s1 = snapshot(root);
    let (check0, apply1) = (&log[0], &log[1]);
    let all: Vec<&Ran> = log.iter().collect();
    if ![0, 1, 3].contains(&apply1.code) || ![0, 1, 3].contains(&check0.code) {
        return fail("exit codes must be 0, 1 or 3", &all);
    }
    if (check0.code == 1) != (apply1.code == 1) {
        return fail("apply --check and apply disagree about an error", &all);
    }
    let changed = changes(&s0, &s1);
    if apply1.code == 1 {
        if !changed.is_empty() {
            return fail(&format!("a failed apply changed files: {changed:?}"), &all);
        }
        return Ok(());
    }
    if !changed.is_empty() && check0.code != 3 {
        return fail(
            &format!(
                "apply --check exited {} but apply changed {changed:?}",
                check0.code
            ),
            &all,
        );
    }
    if changed.is_empty() && apply1.code == 0 && check0.code != 0 {
        return fail("apply --check exited 3 but apply changed nothing", &all);
    }
    let verify = nfkit_at(root, "verify");
    let apply2 = nfkit_at(root, "apply");
    let s2 = snapshot(root);
    let check2 = nfkit_at(root, "apply --check");
    let all: Vec<&Ran> = vec![check0, apply1, &verify, &apply2, &check2];
    if snapshot(root) != s2 {
        return fail("apply --check (after apply) wrote files", &all);
    }
    match (apply1.code, verify.code) {
        (0, 0) | (3, 3) => {}
        (a, v) => {
            return fail(
                &format!("apply exited {a} but verify exited {v}: apply's word is not verify's"),
                &all,
            );
        }
    }
    let again = changes(&s1, &s2);
    if !again.is_empty() {
        return fail(&format!("a second apply wrote: {again:?}"), &all);
    }
    if apply2.code != apply1.code {
        return fail("a second apply exited differently", &all);
    }
    if (apply2.code == 0 && check2.code != 0) || (check2.code == 0 && apply2.code != 0) {
        return fail(
            "apply --check after apply: exit 0 exactly when apply changes nothing and exits 0",
            &all,
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// Where failing seeds are kept (replayed first on every run).
const REGRESSIONS: &str = "tests/proptest-regressions/invariant_apply_verify.txt";

/// The property over generated cases. With `NFKIT_INVARIANT_SURVEY=FILE`
/// every failing case is appended to FILE and the run goes on (to list all
/// kinds of failure at once, without shrinking); the test still fails at
/// the end when any case failed.
#[test]
fn apply_and_verify_agree_on_every_host() {
    let survey = std::env::var_os("NFKIT_INVARIANT_SURVEY").map(PathBuf::from);
    let config = Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let failed = std::cell::Cell::new(0usize);
    let result = runner.run(&case(), |case| match (check(&case), &survey) {
        (Ok(()), _) => Ok(()),
        (Err(message), Some(file)) => {
            failed.set(failed.get() + 1);
            let mut out = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .unwrap();
            let _ = writeln!(out, "##### {case:?}\n{message}");
            Ok(())
        }
        (Err(message), None) => Err(TestCaseError::fail(message)),
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(message, case)) => {
            panic!("{message}\nminimal failing case: {case:#?}")
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(
        failed.get(),
        0,
        "{} cases broke the invariant: see {:?}",
        failed.get(),
        survey
    );
}

// ---------------------------------------------------------------------------
// Minimal failing cases found by the property, kept as plain tests (the
// seeds in tests/proptest-regressions/ replay them too, but a seed depends on
// the generators' shape; these do not).

fn host_of(kind: Kind) -> HostSpec {
    HostSpec {
        kind,
        systemd_via_run: false,
        iptables_rules: false,
        hook: None,
    }
}

fn wants(toml_fields: impl FnOnce(&mut DesiredSpec)) -> DesiredSpec {
    let mut d = DesiredSpec {
        load: vec![],
        options: vec![],
        max: None,
        buckets: None,
        sysctl: vec![],
        targets: None,
    };
    toml_fields(&mut d);
    d
}

fn holds(case: Case) {
    if let Err(message) = check(&case) {
        panic!("{message}\ncase: {case:#?}");
    }
}

/// Fixed here: `[sysctl]` had one key spelled with dots and with slashes, with
/// two values; both lines went into 90-nfkit.conf and the second won. Now
/// refused (apply exits 1, nothing written).
#[test]
fn regression_one_sysctl_key_spelled_twice() {
    holds(Case {
        host: host_of(Kind::Systemd),
        desired: wants(|d| {
            d.sysctl = vec![
                ("net.netfilter.nf_conntrack_udp_timeout", 30),
                ("net/netfilter/nf_conntrack_udp_timeout", 60),
            ]
        }),
        files: vec![],
    });
}

/// Found by the property (seed kept in tests/proptest-regressions): one key
/// spelled twice with the same value, on a Debian host without systemd whose
/// /etc/sysctl.conf sets it: both spellings edited the same line, giving
/// `600` for `60`, and every apply rewrote it. Now one key, one edit.
#[test]
fn regression_one_key_two_spellings_same_value_in_sysctl_conf() {
    holds(Case {
        host: host_of(Kind::DebianSysv),
        desired: wants(|d| {
            d.sysctl = vec![
                ("net/netfilter/nf_conntrack_udp_timeout", 60),
                ("net.netfilter.nf_conntrack_udp_timeout", 60),
            ]
        }),
        files: vec![PreFile::SysctlConf(vec![(
            "net.netfilter.nf_conntrack_udp_timeout",
            Pre::Other(0),
        )])],
    });
}

/// Fixed here: `ip_conntrack.hashsize` (alias-keyed) contradicting
/// `conntrack.buckets` was accepted; nfkit.conf got the alias's value.
#[test]
fn regression_alias_hashsize_contradicts_buckets() {
    holds(Case {
        host: host_of(Kind::Systemd),
        desired: wants(|d| {
            d.buckets = Some(65536);
            d.options = vec![("ip_conntrack", "hashsize", Val::Int(16384))];
        }),
        files: vec![],
    });
}

/// Fixed here: one parameter set through the real name and an alias with
/// two values (`ip_conntrack_ftp.ports`, `nf_conntrack_ftp.ports`).
#[test]
fn regression_one_option_through_alias_and_real_name() {
    holds(Case {
        host: host_of(Kind::Systemd),
        desired: wants(|d| {
            d.options = vec![
                ("nf_conntrack_ftp", "ports", Val::Text("21,2121")),
                ("ip_conntrack_ftp", "ports", Val::Text("21")),
            ]
        }),
        files: vec![],
    });
}

/// Fixed here: the legacy `net.nf_conntrack_max` in /etc/sysctl.conf, read
/// at boot through Debian's `99-sysctl.conf -> ../sysctl.conf`, overrode
/// 90-nfkit.conf (plan did not see it as the same key; verify did).
#[test]
fn regression_legacy_key_in_a_later_sysctl_file() {
    holds(Case {
        host: host_of(Kind::DebianSystemd),
        desired: wants(|d| d.max = Some(262144)),
        files: vec![PreFile::SysctlConf(vec![(
            "net.nf_conntrack_max",
            Pre::Other(0),
        )])],
    });
}

/// Fixed here: a file of another directory named like nfkit's late file
/// (`/run/sysctl.d/99-zz-nfkit.conf`) was taken for nfkit's own and ignored.
#[test]
fn regression_foreign_file_named_like_nfkits() {
    holds(Case {
        host: host_of(Kind::Systemd),
        desired: wants(|d| d.max = Some(65536)),
        files: vec![PreFile::Sysctl {
            dir: SysDir::Run,
            name: "99-zz-nfkit.conf",
            lines: vec![("net.netfilter.nf_conntrack_max", Pre::Other(0))],
        }],
    });
}

/// A glob in a later sysctl.d file: apply and verify must treat it alike
/// (both model globs: a line naming the key wins over any glob).
#[test]
fn glob_key_in_a_later_sysctl_file() {
    holds(Case {
        host: host_of(Kind::Systemd),
        desired: wants(|d| {
            d.sysctl = vec![("net.netfilter.nf_conntrack_tcp_timeout_established", 86400)]
        }),
        files: vec![PreFile::Sysctl {
            dir: SysDir::Etc,
            name: "95-conntrack.conf",
            lines: vec![(
                "net.netfilter.nf_conntrack_tcp_timeout_*",
                Pre::Other(600000),
            )],
        }],
    });
}

/// Fixed (issue 9 part 2, PCS; apply writes sysctl.conf or reports the gap and exits 3, as verify): the host. No sysctl.d: the max in
/// /etc/sysctl.conf is not updated, and no boot path loads the modules.
#[test]
fn regression_pcs_host_without_sysctl_d() {
    holds(Case {
        host: host_of(Kind::El6Pcs),
        desired: wants(|d| {
            d.load = vec!["ip_conntrack", "ipt_state"];
            d.max = Some(600000);
        }),
        files: vec![PreFile::SysctlConf(vec![(
            "net.nf_conntrack_max",
            Pre::Other(500000),
        )])],
    });
}

/// Fixed (issue 9 part 2, PCS; apply writes sysctl.conf or reports the gap and exits 3, as verify): /etc/sysctl.conf applied last (no systemd)
/// overrides 90-nfkit.conf.
#[test]
fn regression_sysctl_conf_applied_last_overrides() {
    holds(Case {
        host: host_of(Kind::DebianSysv),
        desired: wants(|d| d.max = Some(600000)),
        files: vec![PreFile::SysctlConf(vec![(
            "net.netfilter.nf_conntrack_max",
            Pre::Other(500000),
        )])],
    });
}

/// Fixed (issue 9 part 2, PCS; apply writes sysctl.conf or reports the gap and exits 3, as verify): no boot path loads the modules
/// (IPTABLES_MODULES without /etc/sysconfig/iptables, no hook).
#[test]
fn regression_no_boot_path_loads_modules() {
    holds(Case {
        host: host_of(Kind::El6Pcs),
        desired: wants(|d| d.load = vec!["xt_state"]),
        files: vec![],
    });
}

/// Fixed (found by the property; apply now reports the gap under `remaining` and exits 3, as verify): a file applied after nfkit's late
/// sysctl.d name (`zz-late.conf`, `99-zzz-local.conf`, any directory) wins.
#[test]
fn regression_sysctl_file_after_nfkits_late_name() {
    holds(Case {
        host: host_of(Kind::Systemd),
        desired: wants(|d| d.max = Some(262144)),
        files: vec![PreFile::Sysctl {
            dir: SysDir::Etc,
            name: "zz-late.conf",
            lines: vec![("net.netfilter.nf_conntrack_max", Pre::Other(0))],
        }],
    });
}

/// Fixed (found by the property; apply now reports the gap under `remaining` and exits 3, as verify): a modprobe.d file that sorts after
/// nfkit.conf (PCS ships `parallels.conf`) sets the same option.
#[test]
fn regression_modprobe_file_after_nfkit_conf() {
    holds(Case {
        host: host_of(Kind::Systemd),
        desired: wants(|d| d.buckets = Some(65536)),
        files: vec![PreFile::Modprobe {
            dir: ModDir::Etc,
            name: "parallels.conf",
            lines: vec![("nf_conntrack", "hashsize", Pre::Other(Val::Int(1024)))],
        }],
    });
}

/// Fixed (found by the property; apply now reports the gap under `remaining` and exits 3, as verify): busybox (no modprobe.d, no sysctl.d, no
/// sysctl.conf) or explicit `[persist] targets` without a target for what is
/// desired: nothing persists the option or the sysctl.
#[test]
fn regression_nothing_persists_options_or_sysctls() {
    holds(Case {
        host: host_of(Kind::Busybox),
        desired: wants(|d| {
            d.options = vec![("nf_conntrack", "expect_hashsize", Val::Int(1024))];
            d.sysctl = vec![("net.netfilter.nf_log_all_netns", 1)];
        }),
        files: vec![],
    });
    holds(Case {
        host: host_of(Kind::Systemd),
        desired: wants(|d| {
            d.max = Some(262144);
            d.targets = Some(vec!["modules-load.d"]);
        }),
        files: vec![],
    });
}
