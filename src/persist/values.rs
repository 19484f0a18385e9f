//! The values nfkit writes into files root applies at boot (pure): sysctl
//! keys and values, module parameter names and values. Each type checks
//! its grammar once, where text enters (nfkit.toml through serde, the
//! command line, `import`), and cannot hold anything else, so the renderers
//! (modprobe.d `options` lines, sysctl.d / sysctl.conf lines) take only
//! these types and cannot be made to write a second line, a comment or
//! another key. Module names are [`ModuleName`] (plain names only, see
//! [`ModuleName::parse_plain`]).
//!
//! The grammars (README "Input policy"):
//! - [`SysctlKey`]: components of ASCII letters, digits, `_` and `-`,
//!   separated by `.` or by `/` (one or the other, not both); no empty
//!   component (so no `..`, `//`, leading or trailing separator), no leading
//!   `-` (procps reads `-key` as "ignore errors"). Kept in the dotted
//!   spelling (`net/netfilter/x` becomes `net.netfilter.x`).
//! - [`SysctlValue`]: 1 to 4095 printable ASCII characters and spaces, not
//!   starting or ending with a space (both sysctl.d parsers strip them), not
//!   starting with `#` or `;` (a comment start in sysctl.d). 4095: the proc
//!   handlers take at most one page.
//! - [`OptionName`]: a C identifier as module parameters are (`[A-Za-z_]`
//!   then `[A-Za-z0-9_]`), where `-` may stand for `_` (the kernel's
//!   `parameq` compares them equal); 1 to 64 characters.
//! - [`OptionValue`]: one word of 1 to 1024 printable ASCII characters
//!   without `"` and `\`. Refused: blanks (the kernel's `next_arg` would
//!   need `"..."` quoting for them, and the modprobe.d readers, nfkit's and
//!   other tools', split `options` lines at blanks), `"` (it toggles the
//!   kernel's quoting), `\` (a trailing one joins the next modprobe.d
//!   line), control characters (a newline ends the line) and non-ASCII
//!   bytes (the kernel's `isspace` takes byte 0xA0, part of many UTF-8
//!   characters, as a blank). `#` and `=` are fine inside the value
//!   (modprobe.d has no inline comments; the kernel splits at the first
//!   `=`).

use std::borrow::Borrow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use crate::modules::name::ModuleName;

/// Longest sysctl value: the proc handlers read at most one page.
pub const SYSCTL_VALUE_MAX: usize = 4095;
/// Longest sysctl key nfkit accepts.
pub const SYSCTL_KEY_MAX: usize = 255;
/// Longest module parameter name nfkit accepts.
pub const OPTION_NAME_MAX: usize = 64;
/// Longest module parameter value nfkit accepts.
pub const OPTION_VALUE_MAX: usize = 1024;

/// Which kind of value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A [`SysctlKey`].
    SysctlKey,
    /// A [`SysctlValue`].
    SysctlValue,
    /// An [`OptionName`].
    OptionName,
    /// An [`OptionValue`].
    OptionValue,
    /// A [`ModuleName`] in a list or table nfkit writes.
    ModuleName,
}

impl ValueKind {
    fn noun(self) -> &'static str {
        match self {
            ValueKind::SysctlKey => "sysctl key",
            ValueKind::SysctlValue => "sysctl value",
            ValueKind::OptionName => "module parameter name",
            ValueKind::OptionValue => "module parameter value",
            ValueKind::ModuleName => "module name",
        }
    }
}

/// Text refused by one of the value types: which kind, the text (shown
/// escaped and shortened) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} {}: {reason}", kind.noun(), shown(text))]
pub struct ValueError {
    /// The kind of value.
    pub kind: ValueKind,
    /// The refused text.
    pub text: String,
    /// Why.
    pub reason: String,
}

/// The text as a quoted, escaped string of at most about 60 characters.
fn shown(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}

impl crate::error::Hint for ValueError {
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        Some(
            match self.kind {
                ValueKind::SysctlKey => {
                    "sysctl keys are words of letters, digits, `_` and `-` separated by `.` (or all by `/`), e.g. net.netfilter.nf_conntrack_acct"
                }
                ValueKind::SysctlValue => {
                    "sysctl values are one line of printable ASCII, without blanks around them and not starting with `#` or `;`"
                }
                ValueKind::OptionName => {
                    "module parameter names are identifiers: letters, digits, `_` (or `-`), not starting with a digit"
                }
                ValueKind::OptionValue => {
                    "module parameter values are one word of printable ASCII without `\"` or `\\`"
                }
                ValueKind::ModuleName => {
                    "module names are 1 to 55 letters, digits, `_` or `-`"
                }
            }
            .into(),
        )
    }
}

fn refuse(kind: ValueKind, text: &str, reason: impl Into<String>) -> ValueError {
    ValueError {
        kind,
        text: text.to_string(),
        reason: reason.into(),
    }
}

/// Why `c` is refused, in words.
fn describe(c: char) -> String {
    match c {
        '\n' | '\r' => "a line break".into(),
        '\t' => "a tab".into(),
        c if c.is_control() => format!("the control character {c:?}"),
        c if !c.is_ascii() => format!("the non-ASCII character {c:?}"),
        c => format!("{c:?}"),
    }
}

/// The checks every value starts with: not empty (`empty` says why that is
/// refused) and at most `max` bytes (`unit` as the message says it).
fn check_size(text: &str, empty: &str, max: usize, unit: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(empty.to_string());
    }
    if text.len() > max {
        return Err(format!("longer than {max} {unit}"));
    }
    Ok(())
}

/// The first character of `text` that is not printable ASCII or a space.
fn first_unprintable(text: &str) -> Option<char> {
    text.chars().find(|&c| !(c == ' ' || c.is_ascii_graphic()))
}

/// A sysctl key in its dotted spelling (`net.netfilter.nf_conntrack_acct`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysctlKey(String);

impl SysctlKey {
    /// Checks `text` (dotted or slashed spelling) and keeps it dotted.
    pub fn parse(text: &str) -> Result<SysctlKey, ValueError> {
        let bad = |reason: String| refuse(ValueKind::SysctlKey, text, reason);
        check_size(text, "empty key", SYSCTL_KEY_MAX, "bytes").map_err(bad)?;
        if let Some(c) = text
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
        {
            let why = match c {
                '=' | '#' | ';' => format!(
                    "{c:?} cannot be part of a key (it ends the key or starts a comment in sysctl.d)"
                ),
                '*' | '?' | '[' | ']' => format!("{c:?}: globs are not keys"),
                c => format!("{} cannot be part of a key", describe(c)),
            };
            return Err(bad(format!(
                "{why} (letters, digits, `_`, `-`, separated by `.` or `/`)"
            )));
        }
        if text.contains('.') && text.contains('/') {
            return Err(bad(
                "mixes `.` and `/` separators (write it with one of them)".into(),
            ));
        }
        if text.split(['.', '/']).any(str::is_empty) {
            return Err(bad(
                "empty component (`..`, `//`, or a leading or trailing separator)".into(),
            ));
        }
        if text.starts_with('-') {
            return Err(bad(
                "starts with `-` (sysctl.d reads that as \"ignore errors\")".into(),
            ));
        }
        Ok(SysctlKey(text.replace('/', ".")))
    }

    /// The dotted spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path under `/proc/sys` (`net/netfilter/nf_conntrack_acct`).
    pub fn relative_path(&self) -> String {
        self.0.replace('.', "/")
    }
}

/// A sysctl value (see the module documentation for the grammar).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysctlValue(String);

impl SysctlValue {
    /// Checks `text`.
    pub fn parse(text: &str) -> Result<SysctlValue, ValueError> {
        let bad = |reason: String| refuse(ValueKind::SysctlValue, text, reason);
        check_size(text, "empty value", SYSCTL_VALUE_MAX, "bytes").map_err(bad)?;
        if let Some(c) = first_unprintable(text) {
            return Err(bad(format!(
                "{} cannot be part of a sysctl value (one line of printable ASCII)",
                describe(c)
            )));
        }
        if text.starts_with(' ') || text.ends_with(' ') {
            return Err(bad(
                "starts or ends with a blank (sysctl.d strips it)".into()
            ));
        }
        if text.starts_with(['#', ';']) {
            return Err(bad("starts with `#` or `;` (a comment in sysctl.d)".into()));
        }
        Ok(SysctlValue(text.to_string()))
    }

    /// The text written after `=`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A module parameter name as written (`-` and `_` are not folded: compare
/// with [`OptionName::same_parameter`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OptionName(String);

impl OptionName {
    /// Checks `text`.
    pub fn parse(text: &str) -> Result<OptionName, ValueError> {
        let bad = |reason: String| refuse(ValueKind::OptionName, text, reason);
        check_size(text, "empty name", OPTION_NAME_MAX, "characters").map_err(bad)?;
        if let Some(c) = text
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
        {
            return Err(bad(format!(
                "{} cannot be part of a parameter name (letters, digits, `_`, `-`)",
                describe(c)
            )));
        }
        if text.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            return Err(bad(
                "starts with a digit or `-` (parameter names are identifiers)".into(),
            ));
        }
        Ok(OptionName(text.to_string()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` names the same parameter (the kernel's `parameq`).
    pub fn same_parameter(&self, other: &str) -> bool {
        crate::modules::options::parameq(&self.0, other)
    }
}

/// A module parameter value (see the module documentation for the grammar).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OptionValue(String);

impl OptionValue {
    /// Checks `text` (the value itself, without the kernel's quotes).
    pub fn parse(text: &str) -> Result<OptionValue, ValueError> {
        let bad = |reason: String| refuse(ValueKind::OptionValue, text, reason);
        check_size(
            text,
            "empty value (leave the parameter out to keep the module's default)",
            OPTION_VALUE_MAX,
            "bytes",
        )
        .map_err(bad)?;
        if let Some(c) = text
            .chars()
            .find(|&c| !c.is_ascii_graphic() || matches!(c, '"' | '\\'))
        {
            let c = if c == ' ' {
                "a blank".to_string()
            } else {
                describe(c)
            };
            return Err(bad(format!(
                "{c} cannot be part of a module parameter value (one word of printable ASCII, no quotes, no `\\`)"
            )));
        }
        Ok(OptionValue(text.to_string()))
    }

    /// The value (without quotes).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `name=value` word of a modprobe.d `options` line (or of the
    /// kernel's parameter string): the one place it is built.
    pub fn word(&self, name: &OptionName) -> String {
        format!("{}={}", name.0, self.0)
    }
}

/// A plain module name ([`ModuleName::parse_plain`]) with the refusal as a
/// [`ValueError`].
pub fn module_name(text: &str) -> Result<ModuleName, ValueError> {
    ModuleName::parse_plain(text).map_err(|p| refuse(ValueKind::ModuleName, text, p.to_string()))
}

/// The one place a module parameter word is split (`name=value`, a bare
/// `name` meaning `1` as for the kernel's boolean parameters): for words
/// read from modprobe.d or `/etc/modules` by `import`.
pub fn split_word(word: &str) -> Result<(OptionName, OptionValue), ValueError> {
    let (name, value) = word.split_once('=').unwrap_or((word, "1"));
    Ok((OptionName::parse(name)?, OptionValue::parse(value)?))
}

macro_rules! text_type {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = ValueError;
            fn try_from(text: &str) -> Result<Self, ValueError> {
                $ty::parse(text)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = ValueError;
            fn from_str(text: &str) -> Result<Self, ValueError> {
                $ty::parse(text)
            }
        }
        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

text_type!(SysctlKey);
text_type!(SysctlValue);
text_type!(OptionName);
text_type!(OptionValue);

// Keys are strings in nfkit.toml.
macro_rules! string_serde {
    ($ty:ident, $expecting:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::parse(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

string_serde!(SysctlKey, "a sysctl key");
string_serde!(OptionName, "a module parameter name");

// Values are integers, booleans (written 1 / 0) or strings in nfkit.toml;
// they are rendered back as integers when the text is one.
macro_rules! scalar_serde {
    ($ty:ident, $expecting:literal) => {
        impl From<i64> for $ty {
            fn from(n: i64) -> Self {
                $ty(n.to_string())
            }
        }
        impl From<i32> for $ty {
            fn from(n: i32) -> Self {
                $ty(n.to_string())
            }
        }
        impl From<u32> for $ty {
            fn from(n: u32) -> Self {
                $ty(n.to_string())
            }
        }
        impl From<bool> for $ty {
            fn from(b: bool) -> Self {
                $ty(if b { "1" } else { "0" }.to_string())
            }
        }
        impl $ty {
            /// The value as a TOML integer, when its text is one in
            /// canonical form (`0123` stays a string).
            pub fn as_integer(&self) -> Option<i64> {
                self.0
                    .parse::<i64>()
                    .ok()
                    .filter(|n| n.to_string() == self.0)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.as_integer() {
                    Some(n) => s.serialize_i64(n),
                    None => s.serialize_str(&self.0),
                }
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<$ty, E> {
                        Ok($ty::from(n))
                    }
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<$ty, E> {
                        Ok($ty(n.to_string()))
                    }
                    fn visit_bool<E: de::Error>(self, b: bool) -> Result<$ty, E> {
                        Ok($ty::from(b))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::parse(v).map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

scalar_serde!(
    SysctlValue,
    "a sysctl value (an integer, a boolean or a string)"
);
scalar_serde!(
    OptionValue,
    "a module parameter value (an integer, a boolean or a string)"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys() {
        for (text, dotted) in [
            (
                "net.netfilter.nf_conntrack_acct",
                "net.netfilter.nf_conntrack_acct",
            ),
            ("net/netfilter/nf_log/2", "net.netfilter.nf_log.2"),
            ("net.netfilter.nf-x", "net.netfilter.nf-x"),
        ] {
            let key = SysctlKey::parse(text).unwrap();
            assert_eq!(key.as_str(), dotted);
            assert_eq!(key.relative_path(), dotted.replace('.', "/"));
        }
        for bad in [
            "",
            "net.netfilter.",
            ".net.netfilter.x",
            "net..netfilter",
            "net.netfilter.a/../../kernel/x",
            "net/netfilter//x",
            "net.netfilter.x\nkernel.modprobe = /tmp/evil\n#",
            "net.netfilter.nf_conntrack_acct=1 #",
            "net.netfilter.nf_conntrack_tcp_timeout_*",
            "net.netfilter.x y",
            "net.netfilter.x\t",
            "net.netfilter.x;",
            "net.netfilter.é",
            "-net.netfilter.x",
            "net.netfilter/x",
        ] {
            let e = SysctlKey::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid sysctl key "), "{e}");
        }
        assert!(SysctlKey::parse(&format!("net.{}", "x".repeat(300))).is_err());
    }

    #[test]
    fn sysctl_values() {
        for ok in ["1", "4096 87380 6291456", "nf_log_ipv4", "a#b", "-1", "x=y"] {
            assert_eq!(SysctlValue::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            " 1",
            "1 ",
            "#x",
            ";x",
            "86400\nkernel.core_pattern = |/tmp/pwn %p",
            "1\r",
            "1\t2",
            "\u{7f}",
            "é",
        ] {
            let e = SysctlValue::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid sysctl value "), "{e}");
        }
        assert!(SysctlValue::parse(&"1".repeat(SYSCTL_VALUE_MAX)).is_ok());
        assert!(SysctlValue::parse(&"1".repeat(SYSCTL_VALUE_MAX + 1)).is_err());
    }

    #[test]
    fn option_names() {
        for ok in [
            "hashsize",
            "expect-hashsize",
            "_x",
            "nf_conntrack_helper",
            "a1",
        ] {
            assert_eq!(OptionName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "a\ninstall", "#x", "a.b", "1x", "-x", "a=b", "a b", "é"] {
            assert!(OptionName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            OptionName::parse("hash-size")
                .unwrap()
                .same_parameter("hash_size")
        );
    }

    #[test]
    fn option_values_and_words() {
        let name = OptionName::parse("ports").unwrap();
        for (ok, word) in [
            ("21,2121", "ports=21,2121"),
            ("#x", "ports=#x"),
            ("a=b", "ports=a=b"),
        ] {
            assert_eq!(OptionValue::parse(ok).unwrap().word(&name), word);
        }
        for bad in [
            "",
            "a\\",
            "a\"b",
            "\"a\"",
            "a\rb",
            "a\tb",
            " a",
            "a ",
            "a b",
            "\u{e0}",
            "a\ninstall x",
        ] {
            assert!(OptionValue::parse(bad).is_err(), "{bad:?}");
        }
        let (n, v) = split_word("ports=21,2121").unwrap();
        assert_eq!((n.as_str(), v.as_str()), ("ports", "21,2121"));
        let (n, v) = split_word("flag").unwrap();
        assert_eq!((n.as_str(), v.as_str()), ("flag", "1"));
        assert!(split_word("x=").is_err());
    }

    #[test]
    fn errors_show_the_text_escaped_and_hint() {
        let e = SysctlValue::parse("1\nkernel.x = 2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid sysctl value \"1\\nkernel.x = 2\": a line break cannot be part of a sysctl value (one line of printable ASCII)"
        );
        assert!(crate::error::hint(&e).is_some());
    }

    #[test]
    fn integers_stay_integers_in_toml() {
        assert_eq!(SysctlValue::from(true).as_str(), "1");
        assert_eq!(SysctlValue::parse("0123").unwrap().as_integer(), None);
        assert_eq!(OptionValue::from(-2i64).as_integer(), Some(-2));
    }
}
