//! The Prometheus text exposition format (version 0.0.4), pure: metric
//! families in, text out.
//!
//! Rules followed (Prometheus "Exposition formats"):
//! - a family is written once, as `# HELP name text`, `# TYPE name kind`,
//!   then all its samples, one per line: `name{label="value",...} number`;
//! - in HELP text `\` is written `\\` and a line feed `\n`;
//! - in label values `\`, `"` and a line feed are written `\\`, `\"`, `\n`;
//! - metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
//!   `[a-zA-Z_][a-zA-Z0-9_]*` and never start with `__` (reserved);
//! - the text ends with a line feed.
//!
//! Names are checked when a family is built ([`Family::new`],
//! [`Sample::label`]): a bad name is a programming error of nfkit's, caught
//! by the tests, so those constructors panic instead of returning errors.

use std::fmt::Write as _;

/// The `# TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that can go up and down.
    Gauge,
    /// A monotonically increasing total (name ends in `_total`).
    Counter,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One sample: label pairs and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    /// A sample without labels.
    pub fn new(value: f64) -> Self {
        Sample {
            labels: Vec::new(),
            value,
        }
    }

    /// Adds a label (panics on an invalid label name).
    pub fn label(mut self, name: &str, value: impl Into<String>) -> Self {
        assert!(valid_label_name(name), "invalid label name {name:?}");
        self.labels.push((name.to_string(), value.into()));
        self
    }
}

/// A metric family: name, help, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<Sample>,
}

impl Family {
    /// A family without samples (panics on an invalid metric name).
    pub fn new(name: &str, kind: Kind, help: &str) -> Self {
        assert!(valid_metric_name(name), "invalid metric name {name:?}");
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample.
    pub fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// Adds a sample and returns the family.
    pub fn with(mut self, sample: Sample) -> Self {
        self.push(sample);
        self
    }

    /// The family's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.starts_with("__")
        && matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Escapes HELP text: `\` and line feed.
pub fn escape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a label value: `\`, `"` and line feed.
pub fn escape_label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A value as the format writes it (`NaN`, `+Inf`, `-Inf`, integers
/// without a fraction).
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Renders families in order. Families without samples are left out (a
/// `# TYPE` line with no sample says nothing).
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.word());
        for sample in &family.samples {
            out.push_str(&family.name);
            if !sample.labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in sample.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(sample.value));
        }
    }
    out
}

/// A parsed sample line: name, labels, value text.
#[cfg(test)]
pub(crate) type ParsedSample = (String, Vec<(String, String)>, String);

/// Parses the exposition text back (the subset [`render`] writes): used by
/// the tests to check that rendering loses nothing.
#[cfg(test)]
pub(crate) fn parse_samples(text: &str) -> Vec<ParsedSample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("value");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("closing brace");
                let mut labels = Vec::new();
                let mut chars = rest.chars().peekable();
                while chars.peek().is_some() {
                    let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert_eq!(chars.next(), Some('"'));
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("unterminated value") {
                            '\\' => match chars.next().expect("escape") {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.push((label, value));
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders_help_type_and_samples() {
        let families = vec![
            Family::new("node_nf_conntrack_entries", Kind::Gauge, "Entries.")
                .with(Sample::new(7.0)),
            Family::new("nfkit_empty", Kind::Gauge, "Nothing."),
            Family::new("nfkit_conntrack_stat_total", Kind::Counter, "a \\ b\nc")
                .with(Sample::new(3.0).label("cpu", "0").label("stat", "found"))
                .with(
                    Sample::new(0.5)
                        .label("cpu", "1")
                        .label("stat", "a\"b\\c\nd"),
                ),
        ];
        assert_eq!(
            render(&families),
            "# HELP node_nf_conntrack_entries Entries.\n\
             # TYPE node_nf_conntrack_entries gauge\n\
             node_nf_conntrack_entries 7\n\
             # HELP nfkit_conntrack_stat_total a \\\\ b\\nc\n\
             # TYPE nfkit_conntrack_stat_total counter\n\
             nfkit_conntrack_stat_total{cpu=\"0\",stat=\"found\"} 3\n\
             nfkit_conntrack_stat_total{cpu=\"1\",stat=\"a\\\"b\\\\c\\nd\"} 0.5\n"
        );
    }

    #[test]
    fn special_values() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(4294967296.0), "4294967296");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(1e20), "100000000000000000000");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("node_nf_conntrack_entries"));
        assert!(valid_metric_name("a:b_1"));
        assert!(!valid_metric_name("1abc"));
        assert!(!valid_metric_name("a-b"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("cpu"));
        assert!(!valid_label_name("__name"));
        assert!(!valid_label_name("a:b"));
        assert!(std::panic::catch_unwind(|| Sample::new(1.0).label("x-y", "")).is_err());
        assert!(std::panic::catch_unwind(|| Family::new("x y", Kind::Gauge, "")).is_err());
    }

    proptest! {
        /// Any label value (any Unicode, quotes, backslashes, line feeds)
        /// survives rendering: one sample line per sample, parsed back
        /// unchanged.
        #[test]
        fn label_values_round_trip(values in proptest::collection::vec("(?s).*", 1..5), help in "(?s).*") {
            let mut family = Family::new("nfkit_test", Kind::Gauge, &help);
            for (i, v) in values.iter().enumerate() {
                family.push(Sample::new(i as f64).label("name", v.clone()).label("inode", i.to_string()));
            }
            let text = render(&[family]);
            prop_assert_eq!(text.lines().count(), values.len() + 2);
            prop_assert!(text.ends_with('\n'));
            let parsed = parse_samples(&text);
            for (i, v) in values.iter().enumerate() {
                prop_assert_eq!(&parsed[i].0, "nfkit_test");
                prop_assert_eq!(&parsed[i].1[0], &("name".to_string(), v.clone()));
                prop_assert_eq!(&parsed[i].2, &i.to_string());
            }
        }
    }
}
