//! The real systemd-sysctl is the oracle of nfkit's next-boot sysctl model.
//!
//! For generated sysctl.d layouts (explicit keys in every spelling, glob keys,
//! `-key` exclusions, `-` prefixes, the same name in several directories,
//! `/dev/null` masks, empty files, dangling links, `99-sysctl.conf ->
//! ../sysctl.conf`), this machine's systemd-sysctl runs in a fresh mount +
//! network namespace over tmpfs-mounted `/etc/sysctl.d`, `/run/sysctl.d`,
//! `/usr/local/lib/sysctl.d`, `/usr/lib/sysctl.d` (and a bind-mounted
//! `/etc/sysctl.conf`) holding the layout: it sets the per-namespace
//! `net.netfilter.nf_conntrack_*` keys exactly as a boot would, without
//! touching the host. nfkit reads the same layout as a `--root` tree; its
//! next-boot value of every key must be what the kernel shows afterwards.
//!
//! Needs root, `unshare` and systemd-sysctl; fails loudly without them.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nfkit::persist::{nextboot::NextBoot, plan};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use support::{require_root, require_tool};

/// Timeout keys: any positive number is valid, each namespace has its own.
const TIMEOUTS: &[&str] = &[
    "nf_conntrack_tcp_timeout_close",
    "nf_conntrack_tcp_timeout_close_wait",
    "nf_conntrack_tcp_timeout_established",
    "nf_conntrack_tcp_timeout_fin_wait",
    "nf_conntrack_tcp_timeout_last_ack",
    "nf_conntrack_tcp_timeout_max_retrans",
    "nf_conntrack_tcp_timeout_syn_recv",
    "nf_conntrack_tcp_timeout_syn_sent",
    "nf_conntrack_tcp_timeout_time_wait",
    "nf_conntrack_tcp_timeout_unacknowledged",
    "nf_conntrack_udp_timeout",
    "nf_conntrack_udp_timeout_stream",
    "nf_conntrack_icmp_timeout",
    "nf_conntrack_icmpv6_timeout",
    "nf_conntrack_generic_timeout",
    "nf_conntrack_gre_timeout",
    "nf_conntrack_gre_timeout_stream",
    "nf_conntrack_frag6_timeout",
    "nf_conntrack_sctp_timeout_closed",
    "nf_conntrack_sctp_timeout_cookie_echoed",
    "nf_conntrack_sctp_timeout_cookie_wait",
    "nf_conntrack_sctp_timeout_established",
    "nf_conntrack_sctp_timeout_heartbeat_sent",
    "nf_conntrack_sctp_timeout_shutdown_ack_sent",
    "nf_conntrack_sctp_timeout_shutdown_recd",
    "nf_conntrack_sctp_timeout_shutdown_sent",
];

/// 0/1 keys, writable in a network namespace.
const SWITCHES: &[&str] = &[
    "nf_conntrack_acct",
    "nf_conntrack_checksum",
    "nf_conntrack_timestamp",
    "nf_conntrack_log_invalid",
    "nf_conntrack_tcp_loose",
    "nf_conntrack_tcp_be_liberal",
    "nf_conntrack_tcp_ignore_invalid_rst",
];

/// Globs over timeout keys only (every match accepts a timeout value), all
/// under `net/netfilter/nf_conntrack_`: nothing outside the namespace's
/// conntrack keys can match.
const TIMEOUT_GLOBS: &[&str] = &[
    "net.netfilter.nf_conntrack_tcp_timeout_*",
    "net.netfilter.nf_conntrack_tcp_timeout_[cf]*",
    "net.netfilter.nf_conntrack_*_timeout",
    "net.netfilter.nf_conntrack_udp_timeout*",
    "net/netfilter/nf_conntrack_sctp_timeout_shutdown_*",
    "net.netfilter.nf_conntrack_icmp?6_timeout",
    "net.netfilter.nf_conntrack_{udp,gre}_timeout*",
    "net.netfilter.nf_conntrack_tcp_timeout_?????",
    "net.netfilter.nf_conntrack_[!t]*_timeout",
    "/net/netfilter/nf_conntrack_*_timeout_*",
    "net.netfilter.nf_conntrack_sctp_timeout_[[:lower:]]*",
    "net.netfilter.nf_conntrack_tcp_timeout_close*",
];

/// Globs over 0/1 keys only.
const SWITCH_GLOBS: &[&str] = &[
    "net.netfilter.nf_conntrack_{acct,checksum,timestamp}*",
    "net.netfilter.nf_conntrack_tcp_{loose,be_liberal,ignore_invalid_rst}*",
    "net.netfilter.nf_conntrack_[act]*[!a-z]*[!0-9]",
];

/// Values: few, so that the same value recurs (systemd keeps an entry's
/// place when a later line repeats its value); none is a kernel default.
const TIMEOUT_VALUES: &[&str] = &["101", "202", "3003"];

const DIRS: [&str; 4] = [
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
];

const NAMES: &[&str] = &[
    "10-a.conf",
    "50-b.conf",
    "50-c.conf",
    "90-nfkit.conf",
    "99-sysctl.conf",
    "99-zz.conf",
    "60-ignored.txt",
    ".70-hidden.conf",
];

#[derive(Debug, Clone)]
enum Spelling {
    Dots,
    Slashes,
    LeadingSlash,
}

#[derive(Debug, Clone)]
enum LineSpec {
    /// `key = value`.
    Explicit {
        key: &'static str,
        value: &'static str,
        spelling: Spelling,
        dash: bool,
    },
    /// `glob = value`.
    Glob {
        pattern: &'static str,
        value: &'static str,
        dash: bool,
    },
    /// `-key`.
    Exclude {
        key: &'static str,
    },
    /// `-glob` (an entry of its own: it excludes nothing it matches).
    ExcludeGlob {
        pattern: &'static str,
    },
    Comment,
}

#[derive(Debug, Clone)]
enum Content {
    Text(Vec<LineSpec>),
    DevNull,
    Empty,
    Dangling,
    /// `-> ../sysctl.conf` (only meaningful in /etc/sysctl.d).
    SysctlConf,
}

#[derive(Debug, Clone)]
struct FileSpec {
    dir: usize,
    name: &'static str,
    content: Content,
}

#[derive(Debug, Clone)]
struct LayoutSpec {
    files: Vec<FileSpec>,
    sysctl_conf: Vec<LineSpec>,
}

fn line() -> impl Strategy<Value = LineSpec> {
    let timeout_value = proptest::sample::select(TIMEOUT_VALUES);
    let switch_value = proptest::sample::select(&["0", "1"][..]);
    let spelling = prop_oneof![
        3 => Just(Spelling::Dots),
        1 => Just(Spelling::Slashes),
        1 => Just(Spelling::LeadingSlash),
    ];
    prop_oneof![
        4 => (proptest::sample::select(TIMEOUTS), timeout_value.clone(), spelling.clone(), any::<bool>())
            .prop_map(|(key, value, spelling, dash)| LineSpec::Explicit { key, value, spelling, dash }),
        2 => (proptest::sample::select(SWITCHES), switch_value.clone(), spelling, any::<bool>())
            .prop_map(|(key, value, spelling, dash)| LineSpec::Explicit { key, value, spelling, dash }),
        // The first globs often, so that the same glob recurs across files.
        3 => (proptest::sample::select(&TIMEOUT_GLOBS[..3]), timeout_value.clone(), any::<bool>())
            .prop_map(|(pattern, value, dash)| LineSpec::Glob { pattern, value, dash }),
        3 => (proptest::sample::select(TIMEOUT_GLOBS), timeout_value, any::<bool>())
            .prop_map(|(pattern, value, dash)| LineSpec::Glob { pattern, value, dash }),
        2 => (proptest::sample::select(SWITCH_GLOBS), switch_value, any::<bool>())
            .prop_map(|(pattern, value, dash)| LineSpec::Glob { pattern, value, dash }),
        2 => proptest::sample::select(TIMEOUTS).prop_map(|key| LineSpec::Exclude { key }),
        1 => proptest::sample::select(SWITCHES).prop_map(|key| LineSpec::Exclude { key }),
        1 => proptest::sample::select(TIMEOUT_GLOBS).prop_map(|pattern| LineSpec::ExcludeGlob { pattern }),
        1 => Just(LineSpec::Comment),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        12 => proptest::collection::vec(line(), 0..7).prop_map(Content::Text),
        1 => Just(Content::DevNull),
        1 => Just(Content::Empty),
        1 => Just(Content::Dangling),
        1 => Just(Content::SysctlConf),
    ]
}

fn layout() -> impl Strategy<Value = LayoutSpec> {
    let file = (0..DIRS.len(), proptest::sample::select(NAMES), content())
        .prop_map(|(dir, name, content)| FileSpec { dir, name, content });
    (
        proptest::collection::vec(file, 0..9),
        proptest::collection::vec(line(), 0..4),
    )
        .prop_map(|(files, sysctl_conf)| LayoutSpec { files, sysctl_conf })
}

fn render_line(spec: &LineSpec, n: usize) -> String {
    // Vary the spacing systemd strips.
    let (before, after) = [(" ", " "), ("", ""), ("\t", "  ")][n % 3];
    match spec {
        LineSpec::Explicit {
            key,
            value,
            spelling,
            dash,
        } => {
            let key = match spelling {
                Spelling::Dots => format!("net.netfilter.{key}"),
                Spelling::Slashes => format!("net/netfilter/{key}"),
                Spelling::LeadingSlash => format!("/net/netfilter/{key}"),
            };
            let dash = if *dash { "-" } else { "" };
            format!("{dash}{key}{before}={after}{value}")
        }
        LineSpec::Glob {
            pattern,
            value,
            dash,
        } => {
            let dash = if *dash { "-" } else { "" };
            format!("{dash}{pattern}{before}={after}{value}")
        }
        LineSpec::Exclude { key } => format!("-net.netfilter.{key}{after}"),
        LineSpec::ExcludeGlob { pattern } => format!("-{pattern}"),
        LineSpec::Comment => ["# net.netfilter.nf_conntrack_acct = 1", "; x = y", ""][n % 3].into(),
    }
}

fn render_lines(lines: &[LineSpec]) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(n, l)| render_line(l, n) + "\n")
        .collect()
}

/// Writes the layout under `root` (a systemd host tree). Later specs for the
/// same directory and name replace earlier ones.
fn write_layout(root: &Path, spec: &LayoutSpec) {
    fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/sysctl.conf"),
        render_lines(&spec.sysctl_conf),
    )
    .unwrap();
    for dir in DIRS {
        fs::create_dir_all(root.join(&dir[1..])).unwrap();
    }
    for file in &spec.files {
        let path = root.join(&DIRS[file.dir][1..]).join(file.name);
        let _ = fs::remove_file(&path);
        match &file.content {
            Content::Text(lines) => fs::write(&path, render_lines(lines)).unwrap(),
            Content::Empty => fs::write(&path, "").unwrap(),
            Content::DevNull => std::os::unix::fs::symlink("/dev/null", &path).unwrap(),
            Content::Dangling => std::os::unix::fs::symlink("missing.conf", &path).unwrap(),
            Content::SysctlConf => std::os::unix::fs::symlink("../sysctl.conf", &path).unwrap(),
        }
    }
}

fn describe(root: &Path) -> String {
    let mut out = String::new();
    for dir in DIRS
        .iter()
        .map(|d| d.to_string())
        .chain(["/etc".to_string()])
    {
        let Ok(entries) = fs::read_dir(root.join(&dir[1..])) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let shown = format!("{dir}/{}", e.file_name().to_string_lossy());
            if dir == "/etc" && shown != "/etc/sysctl.conf" {
                continue;
            }
            if let Ok(target) = fs::read_link(&path) {
                let _ = writeln!(out, "{shown} -> {}", target.display());
            } else if path.is_file() {
                let _ = writeln!(out, "{shown}:");
                for l in fs::read_to_string(&path).unwrap_or_default().lines() {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
    }
    out
}

fn systemd_sysctl() -> PathBuf {
    [
        "/lib/systemd/systemd-sysctl",
        "/usr/lib/systemd/systemd-sysctl",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("the oracle /lib/systemd/systemd-sysctl is missing: install systemd")
}

/// Runs in a new mount + network namespace: covers the four directories
/// with tmpfs (a missing `/run/sysctl.d` or `/usr/local/lib/sysctl.d` is
/// made on a tmpfs over its parent, never on the host), copies the layout
/// in, binds `/etc/sysctl.conf`, prints the keys' values, runs
/// systemd-sysctl, prints them again.
const SCRIPT: &str = r#"
set -eu
R=$1; TOOL=$2; shift 2
cover() {
  d=$1
  if [ -d "$d" ]; then mount -t tmpfs nfkit-oracle "$d"; return; fi
  case "$d" in
    /run/sysctl.d) mount -t tmpfs nfkit-oracle /run ;;
    /usr/local/lib/sysctl.d)
      if [ -d /usr/local/lib ]; then mount -t tmpfs nfkit-oracle /usr/local/lib
      else echo "oracle: /usr/local/lib is missing" >&2; exit 97; fi ;;
    *) echo "oracle: $d is missing: cannot cover it without touching the host" >&2; exit 97 ;;
  esac
  mkdir "$d"
}
for d in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d; do
  cover "$d"
  cp -a "$R$d/." "$d/"
done
if [ ! -f /etc/sysctl.conf ]; then echo "oracle: no /etc/sysctl.conf to bind over" >&2; exit 97; fi
mount --bind "$R/etc/sysctl.conf" /etc/sysctl.conf
cd /proc/sys/net/netfilter
grep -H . "$@" | sed 's/^/before /'
env -i "$TOOL" >&2 || echo "oracle: systemd-sysctl exited $?" >&2
grep -H . "$@" | sed 's/^/after /'
"#;

struct Outcome {
    before: BTreeMap<String, String>,
    after: BTreeMap<String, String>,
    log: String,
}

fn run_oracle(root: &Path) -> Outcome {
    let output = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            SCRIPT,
            "oracle",
        ])
        .arg(root)
        .arg(systemd_sysctl())
        .args(TIMEOUTS.iter().chain(SWITCHES))
        .output()
        .expect("cannot run unshare");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "oracle namespace failed ({}): {log}",
        output.status
    );
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    for l in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((when, rest)) = l.split_once(' ') else {
            panic!("oracle output line {l:?}");
        };
        let Some((key, value)) = rest.split_once(':') else {
            panic!("oracle output line {l:?}");
        };
        let map = if when == "before" {
            &mut before
        } else {
            &mut after
        };
        map.insert(key.to_string(), value.to_string());
    }
    assert_eq!(after.len(), TIMEOUTS.len() + SWITCHES.len(), "{log}");
    Outcome { before, after, log }
}

/// nfkit's next-boot value of every key (None: no file sets it).
fn nfkit_model(root: &Path) -> BTreeMap<String, Option<String>> {
    let layout = plan::detect(root);
    assert!(layout.systemd, "the test tree is a systemd host");
    let boot = NextBoot::read(root, &layout).unwrap();
    TIMEOUTS
        .iter()
        .chain(SWITCHES)
        .map(|k| {
            let value = boot
                .sysctl_setters(&format!("net.netfilter.{k}"))
                .last()
                .map(|s| s.value.clone());
            (k.to_string(), value)
        })
        .collect()
}

fn check(spec: &LayoutSpec) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_layout(root, spec);
    let model = nfkit_model(root);
    let oracle = run_oracle(root);
    let mut wrong = Vec::new();
    for (key, predicted) in &model {
        let expected = predicted.as_ref().unwrap_or(&oracle.before[key]);
        if &oracle.after[key] != expected {
            wrong.push(format!(
                "{key}: nfkit says {}, systemd-sysctl set {} (default {})",
                predicted.as_deref().unwrap_or("(not set)"),
                oracle.after[key],
                oracle.before[key]
            ));
        }
    }
    prop_assert!(
        wrong.is_empty(),
        "nfkit's next-boot model differs from systemd-sysctl:\n{}\nlayout:\n{}\nsystemd-sysctl log:\n{}",
        wrong.join("\n"),
        describe(root),
        oracle.log
    );
    Ok(())
}

fn preconditions() {
    require_root();
    require_tool("unshare");
    systemd_sysctl();
}

#[test]
fn next_boot_model_matches_systemd_sysctl_over_generated_layouts() {
    preconditions();
    let cases = std::env::var("NFKIT_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut runner = proptest::test_runner::TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/sysctl_oracle.proptest-regressions",
        ))),
        ..Config::default()
    });
    let result = runner.run(&layout(), |spec| check(&spec));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Hand-written cases for each rule (kept as regression tests).
#[test]
fn known_rules_match_systemd_sysctl() {
    preconditions();
    use LineSpec::*;
    let explicit = |key, value| Explicit {
        key,
        value,
        spelling: Spelling::Dots,
        dash: false,
    };
    let glob = |pattern, value| Glob {
        pattern,
        value,
        dash: false,
    };
    let text = |dir, name, lines| FileSpec {
        dir,
        name,
        content: Content::Text(lines),
    };
    let cases = vec![
        // An explicit key beats a later glob.
        vec![
            text(
                0,
                "10-a.conf",
                vec![explicit("nf_conntrack_tcp_timeout_close", "101")],
            ),
            text(
                0,
                "50-b.conf",
                vec![glob("net.netfilter.nf_conntrack_tcp_timeout_*", "202")],
            ),
        ],
        // A later glob repeating its value keeps its place: the middle glob wins.
        vec![
            text(
                0,
                "10-a.conf",
                vec![glob("net.netfilter.nf_conntrack_tcp_timeout_*", "101")],
            ),
            text(
                1,
                "50-b.conf",
                vec![glob("net.netfilter.nf_conntrack_tcp_timeout_close*", "202")],
            ),
            text(
                3,
                "99-zz.conf",
                vec![glob("net.netfilter.nf_conntrack_tcp_timeout_*", "101")],
            ),
        ],
        // A later `-key` cancels an assignment; an earlier one keeps globs off.
        vec![
            text(
                0,
                "10-a.conf",
                vec![
                    explicit("nf_conntrack_udp_timeout", "101"),
                    Exclude {
                        key: "nf_conntrack_udp_timeout_stream",
                    },
                ],
            ),
            text(
                2,
                "50-b.conf",
                vec![
                    Exclude {
                        key: "nf_conntrack_udp_timeout",
                    },
                    glob("net.netfilter.nf_conntrack_udp_timeout*", "202"),
                ],
            ),
        ],
        // /etc masks /usr/lib's file of the same name; sysctl.conf through the link.
        vec![
            text(3, "50-b.conf", vec![explicit("nf_conntrack_acct", "1")]),
            FileSpec {
                dir: 0,
                name: "50-b.conf",
                content: Content::DevNull,
            },
            FileSpec {
                dir: 0,
                name: "99-sysctl.conf",
                content: Content::SysctlConf,
            },
        ],
    ];
    for files in cases {
        let spec = LayoutSpec {
            files,
            sysctl_conf: vec![glob(
                "net.netfilter.nf_conntrack_{acct,checksum,timestamp}*",
                "1",
            )],
        };
        if let Err(e) = check(&spec) {
            panic!("{e}");
        }
    }
}
