//! Rewriting `IPTABLES_MODULES` keeps the user's layout, over generated
//! files: quoting styles (double, single, bare), one-line values, one word
//! per line with indentation, `\` continuations, comments and other
//! assignments around, earlier assignments of the same variable. For each:
//! the rewrite parses back (with nfkit's parser and with bash itself, the
//! shell that sources the file at boot) to exactly the new words, every
//! byte outside the value is unchanged, a one-line value stays one line, a
//! one-word-per-line value stays so, continuations stay, and the change is
//! the smallest one (lines of words that stay are kept).

mod support;

use std::process::Command;

use nfkit::persist::shell_vars;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const NAME: &str = "IPTABLES_MODULES";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Double,
    Single,
    Bare,
}

/// How the words of the value are laid out.
#[derive(Debug, Clone)]
enum Shape {
    /// `"a b  c"` with a separator per gap and blanks at the ends.
    OneLine {
        seps: Vec<&'static str>,
        lead: &'static str,
        trail: &'static str,
    },
    /// One word per line: `"\n  a\n  b\n"` (or first word on the quote
    /// line, or closing quote after the last word).
    Lines {
        indent: &'static str,
        open_newline: bool,
        close_newline: bool,
    },
    /// `"\<newline>    a \<newline>    b"` (double quotes only).
    Continued {
        indent: &'static str,
        first_on_quote_line: bool,
    },
}

#[derive(Debug, Clone)]
struct Case {
    prefix: Vec<&'static str>,
    export: bool,
    style: Style,
    shape: Shape,
    old: Vec<String>,
    comment: bool,
    suffix: Vec<&'static str>,
    final_newline: bool,
    new: Vec<String>,
}

fn escape_double(word: &str) -> String {
    word.chars().fold(String::new(), |mut s, c| {
        if matches!(c, '"' | '\\' | '$' | '`') {
            s.push('\\');
        }
        s.push(c);
        s
    })
}

impl Case {
    fn raw_value(&self) -> String {
        let words: Vec<String> = match self.style {
            Style::Double => self.old.iter().map(|w| escape_double(w)).collect(),
            Style::Single | Style::Bare => self.old.clone(),
        };
        let q = match self.style {
            Style::Double => "\"",
            Style::Single => "'",
            Style::Bare => return words.concat(),
        };
        let inner = match &self.shape {
            Shape::OneLine { seps, lead, trail } => {
                let mut s = lead.to_string();
                for (i, w) in words.iter().enumerate() {
                    if i > 0 {
                        s.push_str(seps[(i - 1) % seps.len()]);
                    }
                    s.push_str(w);
                }
                s.push_str(trail);
                s
            }
            Shape::Lines {
                indent,
                open_newline,
                close_newline,
            } => {
                let mut s = String::new();
                for (i, w) in words.iter().enumerate() {
                    if i > 0 || *open_newline {
                        s.push('\n');
                        s.push_str(indent);
                    }
                    s.push_str(w);
                }
                if *close_newline {
                    s.push('\n');
                }
                s
            }
            Shape::Continued {
                indent,
                first_on_quote_line,
            } => {
                let mut s = String::new();
                for (i, w) in words.iter().enumerate() {
                    if i > 0 {
                        s.push_str(" \\\n");
                        s.push_str(indent);
                    } else if !first_on_quote_line {
                        s.push_str("\\\n");
                        s.push_str(indent);
                    }
                    s.push_str(w);
                }
                s
            }
        };
        format!("{q}{inner}{q}")
    }

    fn text(&self) -> String {
        let mut lines: Vec<String> = self.prefix.iter().map(|l| l.to_string()).collect();
        lines.push(format!(
            "{}{NAME}={}{}",
            if self.export { "export " } else { "" },
            self.raw_value(),
            if self.comment { "  # helpers" } else { "" }
        ));
        lines.extend(self.suffix.iter().map(|l| l.to_string()));
        let mut text = lines.join("\n");
        if self.final_newline {
            text.push('\n');
        }
        text
    }
}

/// Names that overlap often (so that words stay, go and come), plus words
/// that need quoting.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "nf_conntrack", "xt_state", "ipt_REJECT", "iptable_nat", "ip_nat_ftp", "a", "b", "x-y",
        ])
        .prop_map(str::to_string),
        1 => prop::sample::select(vec!["q\"x", "d$x", "b\\s", "it's", "#c", "s;t", "t`x"])
            .prop_map(str::to_string),
    ]
}

/// A line around the assignment; `early` adds an earlier assignment of the
/// same variable (bash keeps the last one, so only the last is rewritten).
fn other_line(early: bool) -> impl Strategy<Value = &'static str> {
    let mut pool = vec![
        "# Load additional iptables modules (nat helpers)",
        "#   Default: -none-",
        "",
        "IPTABLES_MODULES_UNLOAD=\"yes\"",
        "IPTABLES_SAVE_ON_STOP=no",
        "export OTHER='x y'",
        "MULTI=\"one\ntwo\"",
        "C=a\\\nb",
    ];
    if early {
        pool.push("IPTABLES_MODULES=\"early ignored\"");
    }
    prop::sample::select(pool)
}

fn shape(style: Style) -> BoxedStrategy<Shape> {
    let one_line = (
        prop::collection::vec(prop::sample::select(vec![" ", "  ", "\t"]), 1..3),
        prop::sample::select(vec!["", " "]),
        prop::sample::select(vec!["", " "]),
    )
        .prop_map(|(seps, lead, trail)| Shape::OneLine { seps, lead, trail });
    let lines = (
        prop::sample::select(vec!["", "  ", "\t", "    "]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(indent, open_newline, close_newline)| Shape::Lines {
            indent,
            open_newline,
            close_newline,
        });
    let continued = (prop::sample::select(vec!["", "  ", "    "]), any::<bool>()).prop_map(
        |(indent, first_on_quote_line)| Shape::Continued {
            indent,
            first_on_quote_line,
        },
    );
    match style {
        Style::Double => prop_oneof![one_line, lines, continued].boxed(),
        _ => prop_oneof![one_line, lines].boxed(),
    }
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![Just(Style::Double), Just(Style::Single), Just(Style::Bare)]
        .prop_flat_map(|style| {
            let old = match style {
                Style::Bare => prop::sample::select(vec!["nf_conntrack", "a", "x-y"])
                    .prop_map(|w| vec![w.to_string()])
                    .boxed(),
                Style::Single => prop::collection::vec(
                    word().prop_filter("no ' in single quotes", |w| !w.contains('\'')),
                    0..6,
                )
                .boxed(),
                Style::Double => prop::collection::vec(word(), 0..6).boxed(),
            };
            (
                prop::collection::vec(other_line(true), 0..4),
                any::<bool>(),
                Just(style),
                shape(style),
                old,
                any::<bool>(),
                prop::collection::vec(other_line(false), 0..4),
                any::<bool>(),
                prop::collection::vec(word(), 0..6),
            )
        })
        .prop_map(
            |(prefix, export, style, shape, old, comment, suffix, final_newline, new)| Case {
                prefix,
                export,
                style,
                shape,
                old,
                comment,
                suffix,
                final_newline,
                new,
            },
        )
}

/// What bash makes of the variable after sourcing `text`.
fn bash_words(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iptables-config");
    std::fs::write(&file, text).unwrap();
    let out = support::run(
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -f; . \"$1\" || exit 9; printf '%s\\n' ${NAME}"
            ))
            .arg("bash")
            .arg(&file),
    );
    assert!(
        out.status.success(),
        "bash could not source {text:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Lines changed between two texts (removed + added, by a longest common
/// subsequence of lines).
fn changed_lines(a: &str, b: &str) -> usize {
    let a: Vec<&str> = a.split('\n').collect();
    let b: Vec<&str> = b.split('\n').collect();
    let mut len = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            len[i][j] = if a[i] == b[j] {
                len[i + 1][j + 1] + 1
            } else {
                len[i + 1][j].max(len[i][j + 1])
            };
        }
    }
    a.len() + b.len() - 2 * len[0][0]
}

fn common_words(a: &[String], b: &[String]) -> usize {
    let mut len = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            len[i][j] = if a[i] == b[j] {
                len[i + 1][j + 1] + 1
            } else {
                len[i + 1][j].max(len[i][j + 1])
            };
        }
    }
    len[0][0]
}

fn check(case: &Case) {
    let text = case.text();
    let before = shell_vars::parse(&text).expect("the generated file parses");
    let a = shell_vars::find(&before, NAME).unwrap();
    assert_eq!(shell_vars::words(&a.value), case.old, "generator: {text:?}");
    assert_eq!(bash_words(&text), case.old, "generator vs bash: {text:?}");

    let out = shell_vars::set_words(&text, NAME, &case.new).expect("rewrite");
    // Parses back to exactly the new words, for nfkit and for bash.
    let after = shell_vars::parse(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    let b = shell_vars::find(&after, NAME).unwrap();
    assert_eq!(shell_vars::words(&b.value), case.new, "{text:?} -> {out:?}");
    assert_eq!(bash_words(&out), case.new, "bash: {text:?} -> {out:?}");
    // Every byte outside the value is unchanged.
    assert_eq!(out[..b.span.start], text[..a.span.start], "{out:?}");
    assert_eq!(out[b.span.end..], text[a.span.end..], "{out:?}");
    // ... and so is every other assignment.
    let others = |list: &[shell_vars::ShellAssignment], skip: usize| -> Vec<(String, String)> {
        list.iter()
            .filter(|x| x.span.start != skip)
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect()
    };
    assert_eq!(others(&before, a.span.start), others(&after, b.span.start));
    // Same words: same bytes.
    if case.new == case.old {
        assert_eq!(out, text);
        return;
    }
    let old_raw = &text[a.span.clone()];
    let new_raw = &out[b.span.clone()];
    // A one-line value stays one line.
    if !old_raw.contains('\n') {
        assert!(!new_raw.contains('\n'), "{old_raw:?} -> {new_raw:?}");
    }
    match case.shape {
        Shape::Lines { .. } if case.style != Style::Bare && case.old.len() >= 2 => {
            // One word per line stays so.
            for line in new_raw.split('\n') {
                let inside = line.trim_matches(|c| c == '"' || c == '\'');
                assert!(
                    inside.split_whitespace().count() <= 1,
                    "{old_raw:?} -> {new_raw:?}"
                );
            }
        }
        Shape::Continued { .. } if case.style == Style::Double && case.old.len() >= 2 => {
            // Continuations stay: every line of the value but the last ends
            // with `\`, and holds at most one word.
            let lines: Vec<&str> = new_raw.split('\n').collect();
            for (i, line) in lines.iter().enumerate() {
                if i + 1 < lines.len() {
                    assert!(line.ends_with('\\'), "{old_raw:?} -> {new_raw:?}");
                }
                let inside = line.trim_matches(|c| c == '"' || c == '\\');
                assert!(
                    inside.split_whitespace().count() <= 1,
                    "{old_raw:?} -> {new_raw:?}"
                );
            }
        }
        _ => {}
    }
    // The smallest change: a one-line value changes one line; otherwise one
    // line per word removed or added, besides the lines that open and close
    // the value (which hold the quotes, and may hold the first and last words).
    let kept = common_words(&case.old, &case.new);
    let budget = if old_raw.contains('\n') {
        (case.old.len() - kept) + (case.new.len() - kept) + 4
    } else {
        2
    };
    let changed = changed_lines(&text, &out);
    assert!(
        changed <= budget,
        "{changed} lines changed for a budget of {budget}: {text:?} -> {out:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        // Failing cases are kept next to this file (and replayed first).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/shell_vars_layout.proptest-regressions"),
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn rewrite_keeps_the_layout_and_says_exactly_the_new_list(case in case()) {
        check(&case);
    }

    /// The same file with CRLF line endings (issue 10): the same words are
    /// read (the `\r` is no part of any value), and the rewrite is the LF
    /// rewrite with every line ending CRLF.
    #[test]
    fn a_crlf_file_reads_and_rewrites_as_its_lf_twin(case in case()) {
        let lf = case.text();
        let crlf = lf.replace('\n', "\r\n");
        let parsed = shell_vars::parse(&crlf).expect("the CRLF file parses");
        let a = shell_vars::find(&parsed, NAME).unwrap();
        prop_assert_eq!(shell_vars::words(&a.value), case.old.clone());
        let out = shell_vars::set_words(&crlf, NAME, &case.new).expect("rewrite");
        let lf_out = shell_vars::set_words(&lf, NAME, &case.new).expect("rewrite");
        prop_assert_eq!(out, lf_out.replace('\n', "\r\n"));
    }
}

/// The layout of the Parallels guide (one module per line inside the
/// quotes) after `import` translated the names: only the changed lines
/// differ.
#[test]
fn pcs_guide_layout_changes_only_the_renamed_lines() {
    let text = "# Load additional iptables modules (nat helpers)\n\
IPTABLES_MODULES=\"\n\
ip_conntrack\n\
ip_conntrack_ftp\n\
ipt_state\n\
iptable_filter\n\
\"\n\
IPTABLES_MODULES_UNLOAD=\"no\"\n";
    let new: Vec<String> = [
        "nf_conntrack",
        "nf_conntrack_ftp",
        "xt_state",
        "iptable_filter",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = shell_vars::set_words(text, NAME, &new).unwrap();
    assert_eq!(
        out,
        text.replace("ip_conntrack\n", "nf_conntrack\n")
            .replace("ip_conntrack_ftp", "nf_conntrack_ftp")
            .replace("ipt_state", "xt_state")
    );
    assert_eq!(bash_words(&out), new);
}
