//! Editing `/etc/sysctl.conf` in place, over generated files (comments,
//! blank lines, `;` comments, `-` prefixes, `/` separators, odd spacing,
//! duplicates, CRLF, no final newline):
//! - only the last line of each managed key changes (and appended lines at
//!   the end); every other byte stays; a second edit changes nothing;
//! - the file's effective value (`sysctl -p` semantics: the last line wins)
//!   is the desired one;
//! - the oracle: the real `sysctl -p` (procps), run in a fresh network
//!   namespace on the edited file, leaves exactly the desired values of the
//!   per-namespace `net.netfilter.*` keys, and for the keys nfkit does not
//!   manage the value nfkit's model says (the last line).
//!
//! Only keys that exist per network namespace are generated, so `sysctl -p`
//! never touches the host's initial namespace (checked before each run).

mod support;

use std::process::Command;

use nfkit::persist::sysctl_conf;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Per-namespace, writable keys with values valid for them.
const KEYS: [(&str, &[&str]); 5] = [
    ("net.netfilter.nf_conntrack_tcp_loose", &["0", "1"]),
    ("net.netfilter.nf_conntrack_checksum", &["0", "1"]),
    (
        "net.netfilter.nf_conntrack_udp_timeout",
        &["30", "31", "45"],
    ),
    (
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        &["600", "86400", "432000"],
    ),
    ("net.netfilter.nf_conntrack_log_invalid", &["0", "6", "17"]),
];

#[derive(Debug, Clone)]
enum Line {
    Comment(&'static str),
    Blank(&'static str),
    Set {
        key: usize,
        slashes: bool,
        dash: bool,
        spacing: (&'static str, &'static str, &'static str, &'static str),
        value: usize,
        crlf: bool,
    },
}

fn render_line(line: &Line) -> String {
    match line {
        Line::Comment(c) => c.to_string(),
        Line::Blank(b) => b.to_string(),
        Line::Set {
            key,
            slashes,
            dash,
            spacing: (indent, before, after, end),
            value,
            crlf,
        } => {
            let (name, values) = KEYS[*key];
            let name = if *slashes {
                name.replace('.', "/")
            } else {
                name.to_string()
            };
            format!(
                "{indent}{}{name}{before}={after}{}{end}{}",
                if *dash { "-" } else { "" },
                values[value % values.len()],
                if *crlf { "\r" } else { "" }
            )
        }
    }
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        1 => prop::sample::select(vec![
            "# Kernel sysctl configuration file",
            "; semicolon comment",
            "  # net.netfilter.nf_conntrack_tcp_loose = 1",
        ])
        .prop_map(Line::Comment),
        1 => prop::sample::select(vec!["", "   "]).prop_map(Line::Blank),
        4 => (
            0..KEYS.len(),
            any::<bool>(),
            any::<bool>(),
            (
                prop::sample::select(vec!["", "  "]),
                prop::sample::select(vec!["", " ", "\t"]),
                prop::sample::select(vec!["", " ", "  "]),
                prop::sample::select(vec!["", " "]),
            ),
            0..3usize,
            prop::bool::weighted(0.1),
        )
            .prop_map(|(key, slashes, dash, spacing, value, crlf)| Line::Set {
                key,
                slashes,
                dash,
                spacing,
                value,
                crlf,
            }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    lines: Vec<Line>,
    final_newline: bool,
    /// (key index, value index) to set.
    settings: Vec<(usize, usize)>,
    append: bool,
}

impl Case {
    fn text(&self) -> String {
        let mut text = self
            .lines
            .iter()
            .map(render_line)
            .collect::<Vec<_>>()
            .join("\n");
        if self.final_newline && !text.is_empty() {
            text.push('\n');
        }
        text
    }

    fn settings(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for &(k, v) in &self.settings {
            let (name, values) = KEYS[k];
            if out.iter().any(|(n, _)| n == name) {
                continue;
            }
            out.push((name.to_string(), values[v % values.len()].to_string()));
        }
        out
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(line(), 0..10),
        any::<bool>(),
        prop::collection::vec((0..KEYS.len(), 0..3usize), 0..4),
        any::<bool>(),
    )
        .prop_map(|(lines, final_newline, settings, append)| Case {
            lines,
            final_newline,
            settings,
            append,
        })
}

/// The pure properties; returns the edited text.
fn check_edit(case: &Case) -> String {
    let text = case.text();
    let settings = case.settings();
    let typed: Vec<_> = settings
        .iter()
        .map(|(k, v)| {
            (
                nfkit::persist::values::SysctlKey::parse(k).expect("a key"),
                nfkit::persist::values::SysctlValue::parse(v).expect("a value"),
            )
        })
        .collect();
    let out = sysctl_conf::set_values(&text, &typed, case.append);
    // Idempotent.
    assert_eq!(sysctl_conf::set_values(&out, &typed, case.append), out);
    // The effective value is the desired one, for keys the file set or
    // that were appended.
    for (key, value) in &settings {
        match sysctl_conf::effective_value(&text, key) {
            Some(_) => assert_eq!(
                sysctl_conf::effective_value(&out, key),
                Some(value.as_str()),
                "{text:?} -> {out:?}"
            ),
            None if case.append => {
                assert_eq!(
                    sysctl_conf::effective_value(&out, key),
                    Some(value.as_str())
                )
            }
            None => assert_eq!(sysctl_conf::effective_value(&out, key), None),
        }
    }
    // Only the last line of a managed key changes; every other line is
    // byte-identical; after the original lines come the appended keys.
    let body = |t: &str| -> Vec<String> {
        t.split_inclusive('\n')
            .map(|l| l.strip_suffix('\n').unwrap_or(l).to_string())
            .collect()
    };
    let (old_body, new_body) = (body(&text), body(&out));
    let last_of = |key: &str| -> Option<usize> {
        case.lines
            .iter()
            .rposition(|l| matches!(l, Line::Set { key: k, .. } if KEYS[*k].0 == key))
    };
    let managed: Vec<usize> = settings.iter().filter_map(|(k, _)| last_of(k)).collect();
    let missing: Vec<&(String, String)> = settings
        .iter()
        .filter(|(k, _)| sysctl_conf::effective_value(&text, k).is_none())
        .collect();
    let appended = if case.append { missing.len() } else { 0 };
    assert_eq!(
        new_body.len(),
        old_body.len() + appended,
        "{text:?} -> {out:?}"
    );
    for (i, old) in old_body.iter().enumerate() {
        if !managed.contains(&i) {
            assert_eq!(&new_body[i], old, "line {i}: {text:?} -> {out:?}");
        }
    }
    for (line, (key, value)) in new_body[old_body.len()..].iter().zip(missing) {
        assert!(
            line.starts_with(key.as_str()) && line.ends_with(value.as_str()),
            "{line:?}"
        );
    }
    if appended > 0 {
        assert!(out.ends_with('\n'), "{out:?}");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sysctl_conf_edit.proptest-regressions"),
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn edit_changes_only_the_deciding_lines(case in case()) {
        check_edit(&case);
    }
}

fn same_netns_as_init() -> bool {
    std::fs::read_link("/proc/thread-self/ns/net").ok() == std::fs::read_link("/proc/1/ns/net").ok()
}

/// Runs the real `sysctl -p` on `text` in a fresh network namespace and
/// reads back every key of [`KEYS`].
fn real_sysctl_p(text: String) -> Vec<(String, String)> {
    support::require_tool("sysctl");
    support::in_fresh_netns(move || {
        assert!(
            !same_netns_as_init(),
            "refusing to run sysctl -p in the initial network namespace"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sysctl.conf");
        std::fs::write(&file, &text).unwrap();
        // Exit status not checked: procps reports bad lines (as at boot) and
        // still applies the others.
        support::run(Command::new("sysctl").arg("-q").arg("-p").arg(&file));
        KEYS.iter()
            .map(|(key, _)| {
                let out = support::run(Command::new("sysctl").arg("-n").arg(key));
                assert!(out.status.success(), "sysctl -n {key}: {out:?}");
                (
                    key.to_string(),
                    String::from_utf8(out.stdout).unwrap().trim().to_string(),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sysctl_conf_edit.proptest-regressions"),
        ))),
        ..ProptestConfig::default()
    })]

    /// The real `sysctl -p` agrees: desired values for the managed keys, the
    /// model's last line for the others.
    #[test]
    fn real_sysctl_p_applies_the_desired_values(case in case()) {
        let out = check_edit(&case);
        let settings = case.settings();
        let defaults = real_sysctl_p(String::new());
        let applied = real_sysctl_p(out.clone());
        for ((key, real), (_, default)) in applied.iter().zip(&defaults) {
            // check_edit proved the model gives the desired value to every
            // managed key the file sets or got appended.
            let expected = sysctl_conf::effective_value(&out, key).map_or(default.clone(), str::to_string);
            if let Some((_, wanted)) = settings.iter().find(|(k, _)| k == key)
                && (case.append || sysctl_conf::effective_value(&case.text(), key).is_some())
            {
                prop_assert_eq!(&expected, wanted);
            }
            prop_assert_eq!(real, &expected, "{} in {:?}", key, out);
        }
    }
}
