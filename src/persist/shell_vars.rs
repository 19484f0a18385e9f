//! Shell-variable files such as `/etc/sysconfig/iptables-config`, which the
//! iptables init script sources with bash. nfkit never evaluates them: it
//! parses assignments (`KEY=value`, `export KEY=value`) with shell quoting
//! (double and single quotes, backslash escapes, values spanning lines,
//! `#` comments) and refuses anything that would need a shell: expansions
//! (`$`, backticks), commands, typographic quotes. Updating one variable
//! replaces only the bytes of its value, so every other byte of the file
//! (comments, order, other keys, quoting style) stays as it was.

use std::ops::Range;

/// How a value was quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// `KEY=value`.
    Bare,
    /// `KEY="value"`.
    Double,
    /// `KEY='value'`.
    Single,
    /// A mix of the above in one word (`KEY=a"b c"`).
    Mixed,
}

/// One assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellAssignment {
    /// Variable name.
    pub name: String,
    /// The value after quote removal.
    pub value: String,
    /// Byte range of the raw value text (quotes included) in the file.
    pub span: Range<usize>,
    /// Quoting style.
    pub quoting: Quoting,
    /// 1-based line of the assignment.
    pub line: usize,
}

/// A construct nfkit will not interpret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ShellError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Parses the whole file. A CRLF ends a line as LF does (its `\r` is in no
/// value); any other `\r` is text. Spans index `text`.
pub fn parse(text: &str) -> Result<Vec<ShellAssignment>, ShellError> {
    if !text.contains("\r\n") {
        return parse_lf(text);
    }
    let (lf, at) = super::line_endings::lf_view(text);
    let mut assignments = parse_lf(&lf)?;
    for a in &mut assignments {
        a.span = at[a.span.start]..at[a.span.end];
    }
    Ok(assignments)
}

/// [`parse`] of a text whose lines end in LF: every `\r` is text.
fn parse_lf(text: &str) -> Result<Vec<ShellAssignment>, ShellError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |at: usize, reason: String| ShellError {
        line: line_of(text, at),
        reason,
    };
    while i < bytes.len() {
        // Skip blanks, newlines, line continuations between statements.
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b';' => {
                i += 1;
                continue;
            }
            b'\\' if bytes.get(i + 1) == Some(&b'\n') => {
                i += 2;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        let statement_start = i;
        if text[i..].starts_with("export ") || text[i..].starts_with("export\t") {
            i += "export".len();
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
        }
        let name_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let name = &text[name_start..i];
        if name.is_empty() || bytes.get(i) != Some(&b'=') || name.as_bytes()[0].is_ascii_digit() {
            let end = text[statement_start..]
                .find('\n')
                .map_or(text.len(), |n| statement_start + n);
            return Err(err(
                statement_start,
                format!(
                    "not a variable assignment: {:?} (nfkit reads assignments only and never runs the file)",
                    &text[statement_start..end]
                ),
            ));
        }
        i += 1; // '='
        let value_start = i;
        let mut value = String::new();
        let mut styles = Vec::new();
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'\n' | b';') {
            let c = text[i..].chars().next().unwrap_or('\0');
            match c {
                '"' => {
                    styles.push(Quoting::Double);
                    i += 1;
                    loop {
                        let Some(c) = text[i..].chars().next() else {
                            return Err(err(
                                value_start,
                                format!("unterminated double quote in {name}"),
                            ));
                        };
                        match c {
                            '"' => {
                                i += 1;
                                break;
                            }
                            '\\' => {
                                let next = text[i + 1..].chars().next();
                                match next {
                                    Some('\n') => i += 2, // line continuation: removed
                                    Some(n @ ('"' | '\\' | '$' | '`')) => {
                                        value.push(n);
                                        i += 2;
                                    }
                                    _ => {
                                        value.push('\\');
                                        i += 1;
                                    }
                                }
                            }
                            '$' | '`' => {
                                return Err(err(
                                    i,
                                    format!(
                                        "{name}: expansions (`$`, backticks) are not supported"
                                    ),
                                ));
                            }
                            other => {
                                value.push(other);
                                i += other.len_utf8();
                            }
                        }
                    }
                }
                '\'' => {
                    styles.push(Quoting::Single);
                    i += 1;
                    match text[i..].find('\'') {
                        Some(end) => {
                            value.push_str(&text[i..i + end]);
                            i += end + 1;
                        }
                        None => {
                            return Err(err(
                                value_start,
                                format!("unterminated single quote in {name}"),
                            ));
                        }
                    }
                }
                '\\' => {
                    styles.push(Quoting::Bare);
                    match text[i + 1..].chars().next() {
                        Some('\n') => i += 2,
                        Some(n) => {
                            value.push(n);
                            i += 1 + n.len_utf8();
                        }
                        None => i += 1,
                    }
                }
                '$' | '`' | '(' | ')' | '|' | '&' | '<' | '>' => {
                    return Err(err(
                        i,
                        format!("{name}: shell syntax `{c}` is not supported"),
                    ));
                }
                '\u{201c}' | '\u{201d}' | '\u{2018}' | '\u{2019}' => {
                    return Err(err(
                        i,
                        format!(
                            "{name}: typographic quote `{c}` (the shell would keep it in the value; use plain quotes)"
                        ),
                    ));
                }
                other => {
                    styles.push(Quoting::Bare);
                    value.push(other);
                    i += other.len_utf8();
                }
            }
        }
        let span = value_start..i;
        styles.dedup();
        let quoting = match styles.as_slice() {
            [] | [Quoting::Bare] => Quoting::Bare,
            [one] => *one,
            _ => Quoting::Mixed,
        };
        out.push(ShellAssignment {
            name: name.to_string(),
            value,
            span,
            quoting,
            line: line_of(text, statement_start),
        });
        // Anything after the value on the same line must be a comment.
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        if i < bytes.len() && !matches!(bytes[i], b'\n' | b'#' | b';') {
            return Err(err(
                i,
                format!("{name}: unexpected text after the value (a command?)"),
            ));
        }
    }
    Ok(out)
}

/// The last assignment of `name` (the one bash keeps).
pub fn find<'a>(assignments: &'a [ShellAssignment], name: &str) -> Option<&'a ShellAssignment> {
    assignments.iter().rev().find(|a| a.name == name)
}

/// Whether a word can be written bare (no quotes needed).
fn bare_safe(word: &str) -> bool {
    !word.is_empty()
        && !word.starts_with('~')
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b',' | b':' | b'/' | b'+' | b'@' | b'%'
                )
        })
}

/// Quotes a list of words as a fresh value in the style of `previous`
/// (used when the previous value cannot be edited word by word: none, bare,
/// or several quoted pieces). A value that spanned lines gets one word per
/// line.
pub fn quote_words(words: &[String], previous: Option<(&ShellAssignment, &str)>) -> String {
    let multi_line = previous.is_some_and(|(a, text)| text[a.span.clone()].contains('\n'));
    let join = |quoted: Vec<String>| {
        if multi_line {
            format!("\n{}\n", quoted.join("\n"))
        } else {
            quoted.join(" ")
        }
    };
    let style = previous.map(|(a, _)| a.quoting);
    if style == Some(Quoting::Single) && !words.iter().any(|w| w.contains('\'')) {
        return format!("'{}'", join(words.to_vec()));
    }
    if style == Some(Quoting::Bare) && words.len() == 1 && bare_safe(&words[0]) {
        return words[0].clone();
    }
    let escaped = words
        .iter()
        .map(|w| {
            w.chars().fold(String::new(), |mut s, c| {
                if matches!(c, '"' | '\\' | '$' | '`') {
                    s.push('\\');
                }
                s.push(c);
                s
            })
        })
        .collect();
    format!("\"{}\"", join(escaped))
}

/// Sets `name` to `words` in `text`: the last assignment's value is
/// replaced in place; when there is none, `name="..."` is appended.
///
/// The value keeps its layout (see [`super::shell_value`]): words that stay
/// keep their bytes and lines, so the change is the smallest one that says
/// the new list; the same words give back `text` unchanged. Every byte
/// outside the value stays.
///
/// A file whose lines end in CRLF keeps them (see
/// [`super::line_endings`]): the `\r` is not part of any value.
pub fn set_words(text: &str, name: &str, words: &[String]) -> Result<String, ShellError> {
    super::line_endings::edit_keeping_endings(text, |lf| set_words_lf(lf, name, words))
}

fn set_words_lf(text: &str, name: &str, words: &[String]) -> Result<String, ShellError> {
    let assignments = parse_lf(text)?;
    let previous = find(&assignments, name);
    if let Some(bad) = words
        .iter()
        .find(|w| w.is_empty() || w.chars().any(char::is_whitespace))
    {
        return Err(ShellError {
            line: previous.map_or_else(|| text.lines().count() + 1, |a| a.line),
            reason: format!("{name}: {bad:?} cannot be written as one word of the list"),
        });
    }
    match previous {
        Some(a) => {
            if self::words(&a.value) == words {
                return Ok(text.to_string());
            }
            let raw = &text[a.span.clone()];
            let new_value = super::shell_value::split(raw)
                .and_then(|list| list.rewrite(words))
                .unwrap_or_else(|| quote_words(words, Some((a, text))));
            let mut out = String::with_capacity(text.len() + new_value.len());
            out.push_str(&text[..a.span.start]);
            out.push_str(&new_value);
            out.push_str(&text[a.span.end..]);
            Ok(out)
        }
        None => {
            let line = format!("{name}={}\n", quote_words(words, None));
            // What goes between the text and our line, tried in order: the
            // text's last line must end without changing anything. A `\`
            // ending it would continue it onto ours (`X=\<newline>
            // IPTABLES_MODULES=...` is X's value): an empty line ends the
            // continuation first.
            let ends_line = text.is_empty() || text.ends_with('\n');
            ["", "\n", "\n\n"]
                .into_iter()
                .filter(|sep| !sep.is_empty() || ends_line)
                .map(|sep| format!("{text}{sep}{line}"))
                .find(|candidate| appends_cleanly(&assignments, candidate, name))
                .ok_or_else(|| ShellError {
                    line: text.lines().count().max(1),
                    reason: format!(
                        "{name} cannot be appended without changing the last line; end the file with a newline"
                    ),
                })
        }
    }
}

/// Whether `candidate` (the text with one assignment of `name` appended)
/// still holds every earlier assignment as it was, plus the new one last.
fn appends_cleanly(before: &[ShellAssignment], candidate: &str, name: &str) -> bool {
    let Ok(after) = parse_lf(candidate) else {
        return false;
    };
    after.len() == before.len() + 1
        && after.last().is_some_and(|a| a.name == name)
        && before
            .iter()
            .zip(&after)
            .all(|(b, a)| b.name == a.name && b.value == a.value)
}

/// Splits a value into words as `for mod in $VAR` would.
pub fn words(value: &str) -> Vec<String> {
    value.split_whitespace().map(str::to_string).collect()
}

/// [`set_words`] for a list of modules (`IPTABLES_MODULES`): the typed
/// entry of that renderer.
pub fn set_modules(
    text: &str,
    name: &str,
    modules: &[crate::modules::name::ModuleName],
) -> Result<String, ShellError> {
    let words: Vec<String> = modules.iter().map(|m| m.as_str().to_string()).collect();
    set_words(text, name, &words)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EL7: &str = "# Load additional iptables modules (nat helpers)\n\
#   Default: -none-\n\
# Space separated list of nat helpers (e.g. 'ip_nat_ftp ip_nat_irc'), which\n\
# are loaded after the firewall rules are applied. Options for the helpers are\n\
# stored in /etc/modprobe.conf.\n\
IPTABLES_MODULES=\"\"\n\
\n\
# Unload modules on restart and stop\n\
#   Value: yes|no,  default: yes\n\
IPTABLES_MODULES_UNLOAD=\"yes\"\n\
IPTABLES_SAVE_ON_STOP=\"no\"\n\
IPTABLES_STATUS_VERBOSE=\"no\"\n";

    #[test]
    fn parses_the_el7_default_file() {
        let a = parse(EL7).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(a[0].name, "IPTABLES_MODULES");
        assert_eq!(a[0].value, "");
        assert_eq!(a[0].line, 6);
        assert_eq!(a[0].quoting, Quoting::Double);
        assert_eq!(find(&a, "IPTABLES_MODULES_UNLOAD").unwrap().value, "yes");
    }

    #[test]
    fn pcs_multi_line_value_and_continuations() {
        let text = "IPTABLES_MODULES=\"\nip_conntrack\nipt_state\n\"\nA='x y' # c\nB=one\\\ntwo\nexport C=\"q\\\"d\"\n";
        let a = parse(text).unwrap();
        assert_eq!(words(&a[0].value), vec!["ip_conntrack", "ipt_state"]);
        assert_eq!(a[1].value, "x y");
        assert_eq!(a[1].quoting, Quoting::Single);
        assert_eq!(a[2].value, "onetwo");
        assert_eq!(a[3].name, "C");
        assert_eq!(a[3].value, "q\"d");
        assert_eq!(a[3].line, 8);
    }

    #[test]
    fn refuses_what_needs_a_shell() {
        for (text, line, needle) in [
            ("A=\"$(modprobe x)\"\n", 1, "expansions"),
            ("\nA=`id`\n", 2, "shell syntax"),
            ("A=$B\n", 1, "shell syntax"),
            ("[ -f /x ] && A=1\n", 1, "not a variable assignment"),
            ("A=\u{201c}x\u{201d}\n", 1, "typographic"),
            ("A=\"open\n", 1, "unterminated"),
            ("A=1 echo hi\n", 1, "after the value"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert!(e.reason.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn set_words_keeps_every_other_byte() {
        let mods = vec!["nf_conntrack".to_string(), "xt_state".to_string()];
        let updated = set_words(EL7, "IPTABLES_MODULES", &mods).unwrap();
        assert_eq!(
            updated,
            EL7.replace(
                "IPTABLES_MODULES=\"\"",
                "IPTABLES_MODULES=\"nf_conntrack xt_state\""
            )
        );
        // Multi-line style is kept.
        let pcs = "# x\nIPTABLES_MODULES=\"\nip_conntrack\n\"\nOTHER=1\n";
        assert_eq!(
            set_words(pcs, "IPTABLES_MODULES", &mods).unwrap(),
            "# x\nIPTABLES_MODULES=\"\nnf_conntrack\nxt_state\n\"\nOTHER=1\n"
        );
        // Single quotes stay single.
        assert_eq!(
            set_words("IPTABLES_MODULES='a'\n", "IPTABLES_MODULES", &mods).unwrap(),
            "IPTABLES_MODULES='nf_conntrack xt_state'\n"
        );
        // Missing variable is appended.
        assert_eq!(
            set_words("A=1", "IPTABLES_MODULES", &mods).unwrap(),
            "A=1\nIPTABLES_MODULES=\"nf_conntrack xt_state\"\n"
        );
        // Unchanged words give back the same bytes after a parse.
        let again = set_words(&updated, "IPTABLES_MODULES", &mods).unwrap();
        assert_eq!(again, updated);
    }

    /// Issue 10: in a CRLF file the `\r` was part of the value and the
    /// rewritten line ended in LF.
    #[test]
    fn crlf_is_a_line_ending_not_part_of_a_value_and_is_kept() {
        let mods: Vec<String> = vec!["nf_conntrack".into(), "xt_state".into()];
        let text = "# c\r\nIPTABLES_MODULES=\"ip_conntrack\"\r\nA=b\r\nB=x\\\r\ny\r\n";
        let parsed = parse(text).unwrap();
        let values: Vec<(&str, &str)> = parsed
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(
            values,
            [
                ("IPTABLES_MODULES", "ip_conntrack"),
                ("A", "b"),
                ("B", "xy")
            ]
        );
        assert_eq!(parsed[1].line, 3);
        assert_eq!(
            set_words(text, "IPTABLES_MODULES", &mods).unwrap(),
            text.replace("ip_conntrack", "nf_conntrack xt_state")
        );
        // Multi-line values and appended lines take CRLF too.
        let multi = "IPTABLES_MODULES=\"\r\nip_conntrack\r\n\"\r\n";
        assert_eq!(
            set_words(multi, "IPTABLES_MODULES", &mods).unwrap(),
            "IPTABLES_MODULES=\"\r\nnf_conntrack\r\nxt_state\r\n\"\r\n"
        );
        assert_eq!(
            set_words("A=1\r\n", "IPTABLES_MODULES", &mods).unwrap(),
            "A=1\r\nIPTABLES_MODULES=\"nf_conntrack xt_state\"\r\n"
        );
        // A lone `\r` is still text (bash keeps it in the value).
        assert_eq!(parse("A=b\rc\n").unwrap()[0].value, "b\rc");
    }
}
