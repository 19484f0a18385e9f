//! Module options: parsing what the user gives, splitting what modprobe.d
//! gives, and merging the two the way the kernel applies them (pure).
//!
//! libkmod passes `config options + " " + given options` to the kernel
//! (`module_options_concat`); the kernel's `parse_args` applies them left to
//! right, so for a repeated parameter the last one wins: given options
//! override modprobe.d. The kernel compares parameter names with `-` and `_`
//! as equal (`parameq`); so do we.

use std::fmt;

use serde::Serialize;

/// One `NAME=VALUE` (or bare `NAME`) module parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModOption {
    /// Parameter name as written.
    pub name: String,
    /// Value, without surrounding quotes; `None` for a bare flag.
    pub value: Option<String>,
}

/// The kernel's `parameq`: parameter names compare with `-` and `_` equal.
pub(crate) fn parameq(a: &str, b: &str) -> bool {
    let fold = |c: u8| if c == b'-' { b'_' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

impl ModOption {
    /// Whether this option sets parameter `param` (compared as the kernel
    /// does, see [`parameq`]).
    pub fn is_param(&self, param: &str) -> bool {
        parameq(&self.name, param)
    }

    /// The value as passed to the kernel: quoted with `"` when it contains a
    /// space (what modprobe's `options_from_array` does); `None` for a bare
    /// flag.
    pub fn kernel_value(&self) -> Option<String> {
        self.value.as_ref().map(|v| {
            if v.contains(' ') {
                format!("\"{v}\"")
            } else {
                v.clone()
            }
        })
    }

    /// The form passed to the kernel: `name=value` (see
    /// [`Self::kernel_value`]), or the bare name.
    pub fn to_kernel(&self) -> String {
        match self.kernel_value() {
            None => self.name.clone(),
            Some(v) => format!("{}={v}", self.name),
        }
    }
}

impl fmt::Display for ModOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_kernel())
    }
}

/// Why a given option was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionProblem {
    /// No `=`: on the command line a word without `=` is a module name.
    MissingValue,
    /// Empty parameter name (`=5`).
    EmptyName,
    /// A character the kernel's parameter names never contain.
    BadNameChar(char),
    /// A value with a `"` (cannot be passed through the kernel's quoting) or
    /// a control character.
    BadValueChar(char),
}

impl fmt::Display for OptionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionProblem::MissingValue => f.write_str("expected NAME=VALUE"),
            OptionProblem::EmptyName => f.write_str("empty parameter name"),
            OptionProblem::BadNameChar(c) => write!(f, "parameter name contains {c:?}"),
            OptionProblem::BadValueChar(c) => write!(f, "value contains {c:?}"),
        }
    }
}

/// Parses one `NAME=VALUE` given on the command line.
pub(crate) fn parse_given(s: &str) -> Result<ModOption, OptionProblem> {
    let (name, value) = s.split_once('=').ok_or(OptionProblem::MissingValue)?;
    if name.is_empty() {
        return Err(OptionProblem::EmptyName);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(OptionProblem::BadNameChar(c));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| c == '"' || c.is_control() || crate::lossless::is_escape(c))
    {
        return Err(OptionProblem::BadValueChar(c));
    }
    Ok(ModOption {
        name: name.to_owned(),
        value: Some(value.to_owned()),
    })
}

/// Splits an options string the way the kernel's `next_arg` does: words
/// separated by spaces, `"` quotes may enclose spaces (anywhere in the word;
/// the quotes are dropped). modprobe.d has no inline comments: `x=1#c` is the
/// value `1#c`.
pub(crate) fn split(options: &str) -> Vec<ModOption> {
    let mut out = Vec::new();
    let mut chars = options.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut in_quote = false;
        let mut eq: Option<usize> = None;
        for c in chars.by_ref() {
            if c == '"' {
                in_quote = !in_quote;
                continue;
            }
            if c.is_ascii_whitespace() && !in_quote {
                break;
            }
            if c == '=' && eq.is_none() && !in_quote {
                eq = Some(word.len());
            }
            word.push(c);
        }
        out.push(match eq {
            Some(i) => ModOption {
                name: word[..i].to_owned(),
                value: Some(word[i + 1..].to_owned()),
            },
            None => ModOption {
                name: word,
                value: None,
            },
        });
    }
    out
}

/// Joins given options into libkmod's `extra_options` string.
pub(crate) fn join(options: &[ModOption]) -> String {
    options
        .iter()
        .map(ModOption::to_kernel)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where an effective option comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionSource {
    /// modprobe.d `options` lines (and `<module>.<param>=` on the kernel
    /// command line, which libkmod merges in).
    Config,
    /// Given on nfkit's command line.
    Given,
}

/// A parameter as the kernel will see it after all duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveOption {
    /// Parameter name (first spelling seen).
    pub name: String,
    /// The value that wins (the last one).
    pub value: Option<String>,
    /// Where the winning value comes from.
    pub source: OptionSource,
    /// Earlier values for the same parameter that the kernel overwrites,
    /// oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
}

/// Merges config options and given options: order of first appearance,
/// last value wins, given after config.
pub(crate) fn merge(config: &str, given: &[ModOption]) -> Vec<EffectiveOption> {
    let mut out: Vec<EffectiveOption> = Vec::new();
    let all = split(config)
        .into_iter()
        .map(|o| (o, OptionSource::Config))
        .chain(given.iter().cloned().map(|o| (o, OptionSource::Given)));
    for (o, source) in all {
        if let Some(e) = out.iter_mut().find(|e| o.is_param(&e.name)) {
            let old = std::mem::replace(&mut e.value, o.value);
            e.overridden.push(old.unwrap_or_default());
            e.source = source;
        } else {
            out.push(EffectiveOption {
                name: o.name,
                value: o.value,
                source,
                overridden: Vec::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(n: &str, v: &str) -> ModOption {
        ModOption {
            name: n.into(),
            value: Some(v.into()),
        }
    }

    #[test]
    fn parses_given_options() {
        assert_eq!(parse_given("hashsize=65536"), Ok(opt("hashsize", "65536")));
        assert_eq!(parse_given("a=b=c"), Ok(opt("a", "b=c")));
        assert_eq!(parse_given("x="), Ok(opt("x", "")));
        assert_eq!(parse_given("ports=21,2121"), Ok(opt("ports", "21,2121")));
        assert_eq!(parse_given("nested"), Err(OptionProblem::MissingValue));
        assert_eq!(parse_given("=1"), Err(OptionProblem::EmptyName));
        assert_eq!(parse_given("a b=1"), Err(OptionProblem::BadNameChar(' ')));
        assert_eq!(parse_given("a=\"x"), Err(OptionProblem::BadValueChar('"')));
        assert_eq!(
            parse_given("a=x\ny"),
            Err(OptionProblem::BadValueChar('\n'))
        );
    }

    #[test]
    fn parameq_folds_dashes_only() {
        assert!(parameq("hash-size", "hash_size"));
        assert!(parameq("hashsize", "hashsize"));
        assert!(!parameq("hashsize", "hash_size"));
        assert!(!parameq("HashSize", "hashsize"));
        assert!(!parameq("a", "ab"));
        assert!(opt("nf-conntrack_helper", "0").is_param("nf_conntrack-helper"));
    }

    #[test]
    fn kernel_form_quotes_spaces() {
        assert_eq!(opt("a", "x y").kernel_value().as_deref(), Some("\"x y\""));
        assert_eq!(
            ModOption {
                name: "flag".into(),
                value: None
            }
            .to_kernel(),
            "flag"
        );
        assert_eq!(opt("a", "x y").to_kernel(), "a=\"x y\"");
        assert_eq!(join(&[opt("a", "1"), opt("b", "x y")]), "a=1 b=\"x y\"");
        assert_eq!(join(&[]), "");
    }

    #[test]
    fn splits_like_next_arg() {
        assert_eq!(
            split("  hashsize=1024  expect_hashsize=\"a b\" nested x=1#c "),
            vec![
                opt("hashsize", "1024"),
                opt("expect_hashsize", "a b"),
                ModOption {
                    name: "nested".into(),
                    value: None
                },
                opt("x", "1#c"),
            ]
        );
        assert!(split("").is_empty());
    }

    #[test]
    fn merge_last_wins_given_after_config() {
        let m = merge(
            "hash-size=1024 acct=1 hash_size=2048",
            &[opt("hash_size", "65536"), opt("nf_conntrack_helper", "0")],
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].name, "hash-size");
        assert_eq!(m[0].value.as_deref(), Some("65536"));
        assert_eq!(m[0].source, OptionSource::Given);
        assert_eq!(m[0].overridden, vec!["1024", "2048"]);
        assert_eq!(m[1].source, OptionSource::Config);
        assert_eq!(m[2].source, OptionSource::Given);
    }

    proptest::proptest! {
        /// `parameq` is the fold-then-compare the kernel defines, without
        /// allocating.
        #[test]
        fn parameq_is_equality_after_folding(a in "[a-c_-]{0,6}", b in "[a-c_-]{0,6}") {
            proptest::prop_assert_eq!(parameq(&a, &b), a.replace('-', "_") == b.replace('-', "_"));
        }
    }
}
