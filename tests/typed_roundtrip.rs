//! The typed values' promise (issue 10): for every value the types accept,
//! render → parse gives back exactly the same keys and values, nothing
//! more — by nfkit's own parsers, and by the real tools:
//!
//! - `modprobe -c -C FILE` (kmod) prints the configuration it parsed: the
//!   lines our file adds to its output must be exactly our `options` lines;
//! - `sysctl -p FILE` (procps) and `systemd-sysctl FILE` write every setting
//!   of the file; they run in a fresh mount + network namespace with a
//!   tmpfs mounted over `/proc/sys` holding one empty file per generated
//!   key (the script checks that `/proc/sys` is that tmpfs before either
//!   tool runs, so the host's sysctls are never written). Read back, each
//!   file must hold exactly the typed value.
//!
//! Values are generated from each type's grammar with its edge characters
//! (`#`, `;`, `=`, quotes, `\`, `-`, runs of blanks inside a sysctl value).
//! Needs root, `unshare`, modprobe, sysctl and systemd-sysctl; fails loudly
//! without them.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use nfkit::fuzzing;
use nfkit::modules::name::ModuleName;
use nfkit::persist::desired::Desired;
use nfkit::persist::values::{OptionName, OptionValue, SysctlKey, SysctlValue};
use nfkit::persist::{modprobe_d, module_list, shell_vars, sysctl_conf, sysctl_d};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use support::{require_root, require_tool};

type Options = Vec<(ModuleName, Vec<(OptionName, OptionValue)>)>;
type Settings = Vec<(SysctlKey, SysctlValue)>;

// ---- generators (from the grammars) ------------------------------------

/// Module names (prefix `zz_nfkit_` so the oracle's output can be told
/// apart from the host's configuration), with `-` and `_`.
fn module_name() -> impl Strategy<Value = ModuleName> {
    "[A-Za-z0-9_-]{1,20}".prop_map(|tail| {
        ModuleName::parse_plain(&format!("zz_nfkit_{tail}")).expect("the grammar's module name")
    })
}

fn option_name() -> impl Strategy<Value = OptionName> {
    "[A-Za-z_][A-Za-z0-9_-]{0,15}"
        .prop_map(|n| OptionName::parse(&n).expect("the grammar's parameter name"))
}

/// Any printable ASCII word, edge characters weighted up; what the type
/// refuses (`"`, `\`) is filtered out.
fn option_value() -> impl Strategy<Value = OptionValue> {
    prop_oneof!["[!-~]{1,24}", "[#=;'`$,.:-]{1,6}", "-?[0-9]{1,6}",]
        .prop_filter_map("refused by the type", |v| OptionValue::parse(&v).ok())
}

fn options() -> impl Strategy<Value = Options> {
    prop::collection::btree_map(
        module_name(),
        prop::collection::btree_map(option_name(), option_value(), 1..5),
        1..5,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(module, opts)| {
                // One value per parameter as the kernel compares names.
                let mut kept: Vec<(OptionName, OptionValue)> = Vec::new();
                for (k, v) in opts {
                    if !kept.iter().any(|(o, _)| o.same_parameter(k.as_str())) {
                        kept.push((k, v));
                    }
                }
                (module, kept)
            })
            .collect()
    })
}

/// `net.netfilter.` and 1 to 3 components, written with `.` or `/`.
fn sysctl_key() -> impl Strategy<Value = SysctlKey> {
    (
        prop::collection::vec("[A-Za-z0-9_-]{1,10}", 1..4),
        any::<bool>(),
    )
        .prop_map(|(parts, slashes)| {
            let key = if slashes {
                format!("net/netfilter/{}", parts.join("/"))
            } else {
                format!("net.netfilter.{}", parts.join("."))
            };
            SysctlKey::parse(&key).expect("the grammar's sysctl key")
        })
}

/// Printable ASCII with inner blanks (runs of them too); what the type
/// refuses (blanks around, `#`/`;` first) is filtered out.
fn sysctl_value() -> impl Strategy<Value = SysctlValue> {
    prop_oneof![
        "[!-~]([ -~]{0,30}[!-~])?",
        "[0-9]{1,5}( {1,3}[0-9]{1,5}){0,3}",
        "[\"'=#;\\\\ a]{1,8}",
    ]
    .prop_filter_map("refused by the type", |v| SysctlValue::parse(&v).ok())
}

fn settings() -> impl Strategy<Value = Settings> {
    prop::collection::btree_map(sysctl_key(), sysctl_value(), 1..8).prop_filter_map(
        "a key path inside another key's path (file vs directory)",
        |m| {
            let paths: Vec<String> = m.keys().map(SysctlKey::relative_path).collect();
            let nested = paths.iter().any(|a| {
                paths
                    .iter()
                    .any(|b| b.len() > a.len() && b.starts_with(&format!("{a}/")))
            });
            (!nested).then(|| m.into_iter().collect())
        },
    )
}

// ---- what nfkit's own parsers read back ----------------------------------

fn option_set(options: &Options) -> BTreeSet<(String, String, String)> {
    options
        .iter()
        .flat_map(|(m, o)| {
            o.iter()
                .map(move |(k, v)| (m.to_string(), k.to_string(), v.to_string()))
        })
        .collect()
}

fn setting_set(settings: &Settings) -> BTreeSet<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| (k.relative_path(), v.to_string()))
        .collect()
}

/// modprobe.d text → (module, parameter, value), split as the kernel does.
fn parsed_options(text: &str) -> BTreeSet<(String, String, String)> {
    let (directives, errors) = modprobe_d::parse(Path::new("nfkit.conf"), text);
    assert!(errors.is_empty(), "{errors:?}\n{text}");
    let mut out = BTreeSet::new();
    for d in directives {
        let modprobe_d::Directive::Options { module, options } = d.directive else {
            panic!("not an options line: {:?}\n{text}", d.directive);
        };
        for (name, value) in fuzzing::options_split(&options.join(" ")) {
            out.insert((module.clone(), name, value.expect("name=value")));
        }
    }
    out
}

fn parsed_settings(text: &str) -> BTreeSet<(String, String)> {
    let (assignments, errors) = sysctl_d::parse(Path::new("nfkit.conf"), text);
    assert!(errors.is_empty(), "{errors:?}\n{text}");
    assert!(assignments.iter().all(|a| !a.ignore_failure), "{text}");
    assignments.into_iter().map(|a| (a.path, a.value)).collect()
}

fn check_own_parsers(options: &Options, settings: &Settings, load: &[ModuleName]) {
    let header = "# nfkit\n";
    // modprobe.d
    let text = modprobe_d::render_options_file(header, options);
    assert_eq!(parsed_options(&text), option_set(options), "{text}");
    // sysctl.d, and sysctl.conf as nfkit appends to it
    let text = sysctl_d::render(header, settings);
    assert_eq!(parsed_settings(&text), setting_set(settings), "{text}");
    let text = sysctl_conf::set_values("", settings, true);
    assert_eq!(parsed_settings(&text), setting_set(settings), "{text}");
    // modules-load.d, /etc/modules, IPTABLES_MODULES
    let names: Vec<String> = load.iter().map(ToString::to_string).collect();
    let text = module_list::render(header, load);
    let back: Vec<String> = module_list::parse(&text)
        .into_iter()
        .map(|e| {
            assert!(e.params.is_empty(), "{text}");
            e.module
        })
        .collect();
    assert_eq!(back, names, "{text}");
    let text = module_list::with_block("loop\n", load).unwrap();
    assert_eq!(module_list::block_modules(&text).unwrap(), names, "{text}");
    let text = shell_vars::set_modules("IPTABLES=x\n", "IPTABLES_MODULES", load).unwrap();
    let vars = shell_vars::parse(&text).unwrap();
    let set = shell_vars::find(&vars, "IPTABLES_MODULES").expect("set");
    assert_eq!(shell_vars::words(&set.value), names, "{text}");
    // nfkit.toml
    let mut desired = Desired::default();
    desired.modules.load = load.to_vec();
    for (m, o) in options {
        desired
            .modules
            .options
            .insert(m.clone(), o.iter().cloned().collect());
    }
    desired.sysctl = settings.iter().cloned().collect();
    let text = desired.render(&[]);
    let back = Desired::parse("nfkit.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, desired, "{text}");
}

proptest! {
    #![proptest_config(Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/typed_roundtrip.proptest-regressions",
        ))),
        ..Config::default()
    })]

    /// render → parse by nfkit's own parsers: the same set, nothing more.
    #[test]
    fn own_parsers_read_back_exactly_what_the_types_hold(
        options in options(),
        settings in settings(),
        load in prop::collection::vec(module_name(), 0..6),
    ) {
        let load: Vec<ModuleName> = load.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        check_own_parsers(&options, &settings, &load);
    }
}

// ---- the real tools --------------------------------------------------------

/// The lines `modprobe -c -C FILE` prints (the host's kernel command line
/// options and index dumps come along; they are the same for every file).
fn modprobe_config(file: &Path) -> BTreeSet<String> {
    let output = Command::new("/usr/sbin/modprobe")
        .arg("-c")
        .arg("-C")
        .arg(file)
        .env_clear()
        .output()
        .expect("cannot run modprobe");
    assert!(
        output.status.success(),
        "modprobe -c failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "modprobe complained: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

fn check_modprobe(dir: &Path, options: &Options) {
    let empty = dir.join("empty.conf");
    std::fs::write(&empty, "").unwrap();
    let baseline = modprobe_config(&empty);
    let file = dir.join("nfkit.conf");
    let text = modprobe_d::render_options_file("# nfkit\n", options);
    std::fs::write(&file, &text).unwrap();
    let added: BTreeSet<String> = modprobe_config(&file)
        .difference(&baseline)
        .cloned()
        .collect();
    let expected: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("options "))
        .map(str::to_string)
        .collect();
    assert_eq!(added, expected, "modprobe -c read\n{text}");
    // And those lines, split as the kernel splits them, are the typed set.
    let printed: String = added.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(parsed_options(&printed), option_set(options), "{text}");
}

/// In a fresh mount + network namespace: a tmpfs over /proc/sys (checked
/// before any tool runs), one empty file per key, then `TOOL [-p] FILE`; prints
/// `path NUL content NUL` for each key.
const SYSCTL_SCRIPT: &str = r#"
set -eu
FILE=$1; TOOL=$2; FLAG=$3; shift 3
mount -t tmpfs nfkit-oracle /proc/sys
if [ "$(stat -f -c %T /proc/sys)" != tmpfs ]; then
  echo "oracle: /proc/sys is not the tmpfs; not running $TOOL" >&2; exit 97
fi
for k in "$@"; do mkdir -p "/proc/sys/$(dirname "$k")"; : > "/proc/sys/$k"; done
env -i "$TOOL" $FLAG "$FILE" >&2
for k in "$@"; do printf '%s\0' "$k"; cat "/proc/sys/$k"; printf '\0'; done
"#;

fn sysctl_tool_writes(tool: &str, file: &Path, keys: &[String]) -> BTreeMap<String, String> {
    // procps: `sysctl -p FILE`; systemd-sysctl takes the file as argument.
    let tool_args = if tool.ends_with("/sysctl") { "-p" } else { "" };
    let output = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            SYSCTL_SCRIPT,
            "oracle",
        ])
        .arg(file)
        .arg(tool)
        .arg(tool_args)
        .args(keys)
        .output()
        .expect("cannot run unshare");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{tool} in the namespace failed ({}): {log}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let fields: Vec<&str> = stdout.split('\0').collect();
    assert_eq!(
        fields.len(),
        keys.len() * 2 + 1,
        "{tool}: {stdout:?}\n{log}"
    );
    fields
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| {
            // The tools write the value and a newline.
            let value = c[1].strip_suffix('\n').unwrap_or(c[1]);
            (c[0].to_string(), value.to_string())
        })
        .collect()
}

fn systemd_sysctl() -> &'static str {
    [
        "/lib/systemd/systemd-sysctl",
        "/usr/lib/systemd/systemd-sysctl",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("the oracle systemd-sysctl is missing: install systemd")
}

fn check_sysctl_tools(dir: &Path, settings: &Settings) {
    let expected: BTreeMap<String, String> = setting_set(settings).into_iter().collect();
    let sysctl_d_file = dir.join("90-nfkit.conf");
    let sysctl_d_text = sysctl_d::render("# nfkit\n", settings);
    std::fs::write(&sysctl_d_file, &sysctl_d_text).unwrap();
    // sysctl.conf as nfkit appends to it, read by procps (EL hosts).
    let conf_file = dir.join("sysctl.conf");
    let conf_text = sysctl_conf::set_values("", settings, true);
    std::fs::write(&conf_file, &conf_text).unwrap();
    for (tool, file, text) in [
        ("/usr/sbin/sysctl", &sysctl_d_file, &sysctl_d_text),
        (systemd_sysctl(), &sysctl_d_file, &sysctl_d_text),
        ("/usr/sbin/sysctl", &conf_file, &conf_text),
    ] {
        let keys: Vec<String> = settings.iter().map(|(k, _)| k.relative_path()).collect();
        let got = sysctl_tool_writes(tool, file, &keys);
        assert_eq!(got, expected, "{tool} {}\n{text}", file.display());
    }
}

fn preconditions() {
    require_root();
    require_tool("unshare");
    require_tool("modprobe");
    require_tool("sysctl");
    systemd_sysctl();
}

#[test]
fn real_tools_read_back_exactly_what_the_types_hold() {
    preconditions();
    let cases = std::env::var("NFKIT_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/typed_roundtrip_oracle.proptest-regressions",
        ))),
        ..Config::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let dir_path: PathBuf = dir.path().to_path_buf();
    let result = runner.run(&(options(), settings()), |(options, settings)| {
        check_modprobe(&dir_path, &options);
        check_sysctl_tools(&dir_path, &settings);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The oracles see what the types refuse (so the property above can fail):
/// blanks around a sysctl value are stripped by both tools, a trailing `\`
/// joins the next modprobe.d line into the `options` line (an `install`
/// line hidden in it disappears from the config, the words become
/// options), and a blank splits a parameter value into two words.
#[test]
fn oracles_show_why_the_types_refuse_what_they_refuse() {
    preconditions();
    assert!(SysctlValue::parse(" 5 ").is_err());
    assert!(OptionValue::parse("1\\").is_err());
    assert!(OptionValue::parse("a b").is_err());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("90-x.conf");
    std::fs::write(&file, "net.netfilter.zz_a =  5 \n").unwrap();
    let keys = ["net/netfilter/zz_a".to_string()];
    for tool in ["/usr/sbin/sysctl", systemd_sysctl()] {
        let got = sysctl_tool_writes(tool, &file, &keys);
        assert_eq!(got["net/netfilter/zz_a"], "5", "{tool}");
    }
    let file = dir.path().join("x.conf");
    std::fs::write(
        &file,
        "options zz_nfkit_m a=1\\\ninstall zz_nfkit_m /bin/true\noptions zz_nfkit_n b=x y\n",
    )
    .unwrap();
    let printed: Vec<String> = modprobe_config(&file)
        .into_iter()
        .filter(|l| l.contains("zz_nfkit"))
        .collect();
    assert!(
        !printed.iter().any(|l| l.starts_with("install")),
        "{printed:?}"
    );
    // The joined line carries `install` as an option word.
    let m = printed
        .iter()
        .find(|l| l.starts_with("options zz_nfkit_m "))
        .expect("the options line");
    assert!(m.contains("install"), "{printed:?}");
    let n = printed
        .iter()
        .find(|l| l.starts_with("options zz_nfkit_n "))
        .expect("the options line");
    let words = fuzzing::options_split(n.trim_start_matches("options zz_nfkit_n "));
    assert_eq!(
        words,
        [
            ("b".to_string(), Some("x".to_string())),
            ("y".to_string(), None)
        ]
    );
}
