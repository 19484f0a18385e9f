//! sysctl.d(5) / sysctl.conf(5) files: parser, the renderer of nfkit's own
//! file, and which file's value the next boot applies (pure).
//!
//! Two precedence models exist (reference §3.3–3.4):
//! - systemd-sysctl: `*.conf` from `/etc/sysctl.d`, `/run/sysctl.d`,
//!   `/usr/local/lib/sysctl.d`, `/usr/lib/sysctl.d` (and `/lib/sysctl.d`);
//!   a basename in an earlier directory masks the same name later; files are
//!   applied in lexical basename order, so the lexically last file wins.
//!   `/etc/sysctl.conf` is read only through a `99-sysctl.conf` symlink.
//! - procps `sysctl --system`: the same set and order, then
//!   `/etc/sysctl.conf` last, so it overrides everything.

use std::path::{Path, PathBuf};

use crate::sysctl::key_to_relative_path;

/// Directories searched, highest priority first.
pub const SYSCTL_DIRS: [&str; 5] = [
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
    "lib/sysctl.d",
];

/// One assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The key as written.
    pub key: String,
    /// The key normalised to a `/proc/sys` relative path.
    pub path: String,
    /// The value, trimmed.
    pub value: String,
    /// `-key = value`: failures are ignored.
    pub ignore_failure: bool,
    /// 1-based line.
    pub line: usize,
}

/// A line that is not an assignment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct SyntaxError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Parses one file.
pub fn parse(file: &Path, text: &str) -> (Vec<Assignment>, Vec<SyntaxError>) {
    let mut assignments = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let error = |reason: String| SyntaxError {
            file: file.to_path_buf(),
            line: index + 1,
            reason,
        };
        let Some((key, value)) = line.split_once('=') else {
            // `-key` alone excludes a key from globs (systemd); keep quiet.
            if line.starts_with('-') {
                continue;
            }
            errors.push(error(format!("no `=` in {line:?}")));
            continue;
        };
        let mut key = key.trim();
        let ignore_failure = key.starts_with('-');
        key = key.trim_start_matches('-');
        match key_to_relative_path(key) {
            Ok(path) => assignments.push(Assignment {
                key: key.to_string(),
                path,
                value: value.trim().to_string(),
                ignore_failure,
                line: index + 1,
            }),
            Err(e) => errors.push(error(e.to_string())),
        }
    }
    (assignments, errors)
}

/// A config file found on disk, with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Path (as seen from the root, e.g. `/etc/sysctl.d/90-nfkit.conf`).
    pub path: PathBuf,
    /// Contents.
    pub text: String,
}

/// Orders `*.conf` files the way systemd does: a basename in an earlier
/// directory hides the same basename later; the result is sorted by
/// basename. `files` holds (directory index, basename, contents); a file
/// whose contents are `None` is a mask (`/dev/null` symlink).
pub fn effective_order(files: Vec<(usize, String, PathBuf, Option<String>)>) -> Vec<ConfigFile> {
    let mut by_name: std::collections::BTreeMap<String, (usize, PathBuf, Option<String>)> =
        std::collections::BTreeMap::new();
    for (dir, name, path, text) in files {
        if !name.ends_with(".conf") || name.starts_with('.') {
            continue;
        }
        match by_name.get(&name) {
            Some((existing, _, _)) if *existing <= dir => {}
            _ => {
                by_name.insert(name, (dir, path, text));
            }
        }
    }
    by_name
        .into_values()
        .filter_map(|(_, path, text)| text.map(|text| ConfigFile { path, text }))
        .collect()
}

/// Who sets a key at boot, and who else does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setters {
    /// Every (file, line, value) assigning the key, in application order.
    pub all: Vec<(PathBuf, usize, String)>,
}

impl Setters {
    /// The value applied last (the winner), if any.
    pub fn winner(&self) -> Option<&(PathBuf, usize, String)> {
        self.all.last()
    }
}

/// All assignments of the key at `path` (normalised), in application order,
/// over `ordered` files followed by `trailing` (procps' `/etc/sysctl.conf`).
pub fn setters_of(path: &str, ordered: &[ConfigFile], trailing: Option<&ConfigFile>) -> Setters {
    // net.nf_conntrack_max is the same kernel variable as
    // net.netfilter.nf_conntrack_max (legacy name, initial namespace only).
    let same: &[&str] = match path {
        "net/netfilter/nf_conntrack_max" | "net/nf_conntrack_max" => {
            &["net/netfilter/nf_conntrack_max", "net/nf_conntrack_max"]
        }
        _ => &[],
    };
    let mut all = Vec::new();
    for file in ordered.iter().chain(trailing) {
        let (assignments, _) = parse(&file.path, &file.text);
        for a in assignments {
            if a.path == path || same.contains(&a.path.as_str()) {
                all.push((file.path.clone(), a.line, a.value));
            }
        }
    }
    Setters { all }
}

/// Renders nfkit's sysctl.d file.
pub fn render(header: &str, settings: &[(String, String)]) -> String {
    let mut text = String::from(header);
    for (key, value) in settings {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments_comments_and_prefix() {
        let (a, e) = parse(
            Path::new("/etc/sysctl.conf"),
            "# c\n; c\n\nnet.netfilter.nf_conntrack_max = 500000\n-net.nf_conntrack_max=1\n  kernel/x = a b \n-net.ipv4.conf.*.rp_filter\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].path, "net/netfilter/nf_conntrack_max");
        assert_eq!(a[0].value, "500000");
        assert_eq!(a[0].line, 4);
        assert!(a[1].ignore_failure);
        assert_eq!(a[1].path, "net/nf_conntrack_max");
        assert_eq!(a[2].value, "a b");
    }

    #[test]
    fn bad_lines_have_file_and_line() {
        let (_, e) = parse(
            Path::new("/etc/sysctl.d/x.conf"),
            "ok = 1\njunk\nnet/../x = 1\n",
        );
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].to_string(),
            "/etc/sysctl.d/x.conf:2: no `=` in \"junk\""
        );
        assert_eq!(e[1].line, 3);
    }

    #[test]
    fn earlier_directory_masks_and_lexical_order() {
        let files = vec![
            (
                3,
                "10-a.conf".into(),
                PathBuf::from("/usr/lib/sysctl.d/10-a.conf"),
                Some("k = usr\n".into()),
            ),
            (
                0,
                "10-a.conf".into(),
                PathBuf::from("/etc/sysctl.d/10-a.conf"),
                Some("k = etc\n".into()),
            ),
            (
                3,
                "50-b.conf".into(),
                PathBuf::from("/usr/lib/sysctl.d/50-b.conf"),
                Some("k = b\n".into()),
            ),
            (
                0,
                "50-b.conf".into(),
                PathBuf::from("/etc/sysctl.d/50-b.conf"),
                None,
            ), // masked
            (
                1,
                "99-z.conf".into(),
                PathBuf::from("/run/sysctl.d/99-z.conf"),
                Some("other = 1\n".into()),
            ),
            (
                0,
                "README".into(),
                PathBuf::from("/etc/sysctl.d/README"),
                Some("k = no\n".into()),
            ),
        ];
        let ordered = effective_order(files);
        let names: Vec<_> = ordered
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        assert_eq!(
            names,
            ["/etc/sysctl.d/10-a.conf", "/run/sysctl.d/99-z.conf"]
        );
        let setters = setters_of("k", &ordered, None);
        assert_eq!(setters.winner().unwrap().2, "etc");
        let conf = ConfigFile {
            path: "/etc/sysctl.conf".into(),
            text: "k=last\n".into(),
        };
        assert_eq!(
            setters_of("k", &ordered, Some(&conf)).winner().unwrap().2,
            "last"
        );
    }

    #[test]
    fn render_round_trips() {
        let text = render(
            "# nfkit\n",
            &[("net.netfilter.nf_conntrack_max".into(), "500000".into())],
        );
        assert_eq!(text, "# nfkit\nnet.netfilter.nf_conntrack_max = 500000\n");
        let (a, e) = parse(Path::new("x"), &text);
        assert!(e.is_empty());
        assert_eq!(a[0].value, "500000");
    }
}
