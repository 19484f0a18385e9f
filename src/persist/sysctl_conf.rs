//! `/etc/sysctl.conf` edited in place (pure): where the host's boot reads
//! this file (no sysctl.d, or procps applying it after every sysctl.d file),
//! nfkit sets its keys there the way it sets `IPTABLES_MODULES` in
//! iptables-config: only the lines of those keys change, every other byte
//! (comments, spacing, order, other keys) stays.
//!
//! `sysctl -p FILE` (procps) and the init scripts that run it write every
//! assignment in file order, so the **last** line of a key decides. For
//! each key nfkit therefore changes only the value of the last line that
//! sets it (under any of its names), and leaves earlier duplicates alone:
//! they are overwritten at the same boot. A key the file does not set is
//! appended at the end (it is then the last), when the file is nfkit's
//! place for sysctls on that host.
//!
//! Names: the line keeps the name the admin wrote. `net.nf_conntrack_max`
//! (the 2.6-era name, still in the initial namespace of every kernel, and
//! the host-wide cap on Virtuozzo/PCS kernels) and
//! `net.netfilter.nf_conntrack_max` are one variable; a line with either
//! name is the key's line and keeps its name. Appended lines use the name
//! of nfkit.toml.

use super::values::{SysctlKey, SysctlValue};
use crate::sysctl::key_to_relative_path;

/// Other names of the same kernel variable (relative /proc/sys paths).
pub(crate) fn same_variable(path: &str) -> Vec<String> {
    match path {
        "net/netfilter/nf_conntrack_max" | "net/nf_conntrack_max" => vec![
            "net/netfilter/nf_conntrack_max".into(),
            "net/nf_conntrack_max".into(),
        ],
        _ => vec![path.to_string()],
    }
}

/// One assignment line as `sysctl -p` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// Normalised key (relative /proc/sys path).
    path: String,
    /// Byte range of the value (trimmed) in the file.
    value: std::ops::Range<usize>,
    /// Byte offset of the `=`.
    equals: usize,
    /// The text from the end of the key to the start of the value (` = `).
    separator: String,
}

/// The assignment lines of `text` (comments, blank and unparsable lines
/// are not assignments; procps skips or rejects them, and nfkit leaves
/// them as they are).
fn assignments(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    for raw in text.split_inclusive('\n') {
        let body = raw.strip_suffix('\n').unwrap_or(raw);
        let trimmed = body.trim_start();
        let at = start;
        start += raw.len();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let Some(eq) = body.find('=') else {
            continue;
        };
        let key = body[..eq].trim().trim_start_matches('-');
        let Ok(path) = key_to_relative_path(key) else {
            continue;
        };
        let after = &body[eq + 1..];
        let lead = after.len() - after.trim_start().len();
        let value_start = eq + 1 + lead;
        let value_end = value_start + after.trim().len();
        let key_end = body[..eq].trim_end().len();
        out.push(Line {
            path,
            value: at + value_start..at + value_end,
            equals: at + eq,
            separator: body[key_end..value_start].to_string(),
        });
    }
    out
}

/// The value `sysctl -p` leaves for `key` after reading `text` (the last
/// line of the key under any of its names), if the file sets it.
pub fn effective_value<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    let path = key_to_relative_path(key).ok()?;
    let names = same_variable(&path);
    assignments(text)
        .into_iter()
        .rev()
        .find(|l| names.contains(&l.path))
        .map(|l| &text[l.value])
}

/// `text` with every `(key, value)` of `settings` in effect: the last line
/// of each key gets the value (only when it differs); keys the file does
/// not set are appended when `append_missing`. Same values give back the
/// same bytes.
pub fn set_values(
    text: &str,
    settings: &[(SysctlKey, SysctlValue)],
    append_missing: bool,
) -> String {
    let lines = assignments(text);
    // (range to replace, new text), applied from the end.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut missing = Vec::new();
    for (key, value) in settings {
        let names = same_variable(&key.relative_path());
        let value = value.as_str();
        match lines.iter().rev().find(|l| names.contains(&l.path)) {
            Some(line) if &text[line.value.clone()] == value => {}
            Some(line) if line.value.is_empty() => {
                // `key =` (empty value): write after the `=`, spaced as the
                // text before it is.
                let spaced = text[..line.equals].ends_with([' ', '\t']);
                let at = line.equals + 1;
                let new = if spaced {
                    format!(" {value}")
                } else {
                    value.to_string()
                };
                edits.push((at..line.value.end.max(at), new));
            }
            Some(line) => edits.push((line.value.clone(), value.to_string())),
            None => missing.push((key, value)),
        }
    }
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = text.to_string();
    for (range, new) in edits {
        out.replace_range(range, &new);
    }
    if append_missing && !missing.is_empty() {
        // Spaced like the file's last assignment (` = ` when it has none).
        let separator = lines
            .last()
            .map_or(" = ".to_string(), |l| l.separator.clone());
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for (key, value) in missing {
            out.push_str(&format!("{key}{separator}{value}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str, key: &str, value: &str, append: bool) -> String {
        set_values(
            text,
            &[(
                SysctlKey::parse(key).unwrap(),
                SysctlValue::parse(value).unwrap(),
            )],
            append,
        )
    }

    const EL6: &str = "# Kernel sysctl configuration file for Red Hat Linux\n\
#\n\
# Controls IP packet forwarding\n\
net.ipv4.ip_forward = 0\n\
\n\
kernel.sysrq = 0\n\
net.nf_conntrack_max = 500000\n\
kernel.shmmax = 68719476736\n";

    #[test]
    fn changes_only_the_value_and_keeps_the_legacy_name() {
        let out = set(EL6, "net.netfilter.nf_conntrack_max", "600000", true);
        assert_eq!(
            out,
            EL6.replace(
                "net.nf_conntrack_max = 500000",
                "net.nf_conntrack_max = 600000"
            )
        );
        assert_eq!(
            effective_value(&out, "net.netfilter.nf_conntrack_max"),
            Some("600000")
        );
        // The same value again: the same bytes.
        assert_eq!(
            set(&out, "net.netfilter.nf_conntrack_max", "600000", true),
            out
        );
    }

    #[test]
    fn the_last_line_of_a_key_is_the_one_changed() {
        let text =
            "net.netfilter.nf_conntrack_max=1\n# later\n  net.nf_conntrack_max\t=  2  \nvm.x = 3\n";
        let out = set(text, "net.netfilter.nf_conntrack_max", "9", false);
        assert_eq!(
            out,
            "net.netfilter.nf_conntrack_max=1\n# later\n  net.nf_conntrack_max\t=  9  \nvm.x = 3\n"
        );
        // Already in effect through the last line: nothing changes, even
        // though an earlier duplicate says otherwise.
        assert_eq!(set(text, "net.nf_conntrack_max", "2", true), text);
    }

    #[test]
    fn missing_keys_are_appended_when_the_file_is_the_place() {
        let key = "net.netfilter.nf_conntrack_tcp_timeout_established";
        assert_eq!(set("a=1", key, "600", true), format!("a=1\n{key}=600\n"));
        assert_eq!(set("", key, "600", true), format!("{key} = 600\n"));
        assert_eq!(set("# c\n", key, "600", false), "# c\n");
        assert_eq!(
            set("a = 1\n", key, "600", true),
            format!("a = 1\n{key} = 600\n")
        );
    }

    #[test]
    fn slashes_dashes_comments_and_empty_values() {
        let text = "; c\n# net.netfilter.nf_conntrack_max = 7\n-net/netfilter/nf_conntrack_max = 5\r\nbad line\nk =\n";
        let out = set(text, "net.netfilter.nf_conntrack_max", "6", true);
        assert_eq!(
            out,
            "; c\n# net.netfilter.nf_conntrack_max = 7\n-net/netfilter/nf_conntrack_max = 6\r\nbad line\nk =\n"
        );
        assert_eq!(set("k =\n", "k", "1", true), "k = 1\n");
        assert_eq!(set("k=\n", "k", "1", true), "k=1\n");
        assert_eq!(effective_value("k=\n", "k"), Some(""));
    }
}
