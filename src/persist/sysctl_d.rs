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
//!
//! Glob keys (`net.netfilter.nf_conntrack_tcp_timeout_* = 60`, see
//! [`super::sysctl_glob`]) and `-key` exclusion lines follow systemd-sysctl
//! (v246+; checked against v252's source and binary):
//! - every line goes into one ordered map keyed by the normalised key (glob
//!   or not): a line with the value already there changes nothing (the entry
//!   keeps its place), a different value (or an exclusion) removes the entry
//!   and appends the new one. The map is then applied in order.
//! - a glob writes every existing key it matches that has no entry of its
//!   own: an explicit `key = value` anywhere, or a `-key` line, wins over
//!   every glob whatever the file order; a later `-key` line also cancels an
//!   earlier `key = value`, so the key is not written at all.
//! - among globs, the one applied last wins: map order, so a glob repeated
//!   later with the same value does not move.
//!
//! procps-ng 4 (`sysctl --system`) writes line by line instead: an explicit
//! key's last line wins, globs skip keys named by any `key = value` or `-key`
//! line, and a `-key` line does not cancel an assignment.

use super::values::{SysctlKey, SysctlValue};
use std::path::{Path, PathBuf};

use super::sysctl_glob;
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

/// One meaningful line of a sysctl.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `key = value` (or `-key = value`).
    Assign(Assignment),
    /// `-key` alone: no glob sets the key (systemd ≥ 246, procps-ng 4).
    Exclude {
        /// The key as written (without the `-`).
        key: String,
        /// Normalised to a `/proc/sys` relative path.
        path: String,
        /// 1-based line.
        line: usize,
    },
}

impl Line {
    /// The normalised key.
    pub fn path(&self) -> &str {
        match self {
            Line::Assign(a) => &a.path,
            Line::Exclude { path, .. } => path,
        }
    }
}

impl Assignment {
    /// Whether the key is a glob pattern.
    pub fn is_glob(&self) -> bool {
        sysctl_glob::is_glob(&self.path)
    }
}

/// Parses one file: assignments and `-key` exclusion lines, as
/// systemd-sysctl reads them (one leading `-` is stripped).
pub fn parse_lines(file: &Path, text: &str) -> (Vec<Line>, Vec<SyntaxError>) {
    let mut lines = Vec::new();
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
            let Some(key) = line.strip_prefix('-') else {
                errors.push(error(format!("no `=` in {line:?}")));
                continue;
            };
            let key = key.trim();
            match key_to_relative_path(key) {
                Ok(path) => lines.push(Line::Exclude {
                    key: key.to_string(),
                    path,
                    line: index + 1,
                }),
                Err(e) => errors.push(error(e.to_string())),
            }
            continue;
        };
        let (key, ignore_failure) = match key.strip_prefix('-') {
            Some(rest) => (rest.trim(), true),
            None => (key.trim(), false),
        };
        match key_to_relative_path(key) {
            Ok(path) => lines.push(Line::Assign(Assignment {
                key: key.to_string(),
                path,
                value: value.trim().to_string(),
                ignore_failure,
                line: index + 1,
            })),
            Err(e) => errors.push(error(e.to_string())),
        }
    }
    (lines, errors)
}

/// Parses one file's assignments (exclusion lines are left out).
pub fn parse(file: &Path, text: &str) -> (Vec<Assignment>, Vec<SyntaxError>) {
    let (lines, errors) = parse_lines(file, text);
    let assignments = lines
        .into_iter()
        .filter_map(|l| match l {
            Line::Assign(a) => Some(a),
            Line::Exclude { .. } => None,
        })
        .collect();
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

/// Whether systemd/libkmod read a file of this name in a `.d` directory
/// (`*.conf`, not hidden).
pub fn is_conf_name(name: &str) -> bool {
    name.ends_with(".conf") && !name.starts_with('.')
}

/// Orders `*.conf` files the way systemd does: a basename in an earlier
/// directory hides the same basename later; the result is sorted by
/// basename. `files` holds (directory index, basename, contents); a file
/// whose contents are `None` is a mask (`/dev/null` symlink).
pub fn effective_order(files: Vec<(usize, String, PathBuf, Option<String>)>) -> Vec<ConfigFile> {
    let mut by_name: std::collections::BTreeMap<String, (usize, PathBuf, Option<String>)> =
        std::collections::BTreeMap::new();
    for (dir, name, path, text) in files {
        if !is_conf_name(&name) {
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

/// What applies the files at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applier {
    /// systemd-sysctl: sysctl.d only, one ordered map (see the module doc).
    SystemdSysctl,
    /// procps `sysctl --system`: sysctl.d then `/etc/sysctl.conf`, line by line.
    ProcpsSystem,
}

/// One line that writes the key at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setter {
    /// The file (as seen inside the root).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The value written.
    pub value: String,
    /// The glob key as written, when the line sets the key through a glob.
    pub glob: Option<String>,
}

/// Why a line that names (or matches) the key writes nothing at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A later line of the same key replaced it (systemd's map).
    Replaced,
    /// A glob that matches the key: the key has a line of its own.
    ExplicitWins,
    /// A `-key` line: no glob sets the key.
    Exclusion,
    /// An assignment cancelled by a later `-key` line (systemd).
    Cancelled,
}

/// A line that names or matches the key but does not write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The line (value empty for a `-key` line).
    pub setter: Setter,
    /// Why.
    pub why: Skip,
}

/// Who sets a key at boot, and who else names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setters {
    /// Every write of the key, in the order they happen: the last one wins.
    pub writes: Vec<Setter>,
    /// Lines that name or match the key and write nothing, in file order.
    pub skipped: Vec<Skipped>,
}

impl Setters {
    /// The value applied last (the winner), if any.
    pub fn winner(&self) -> Option<&Setter> {
        self.writes.last()
    }
}

/// Other names of the same kernel variable: `net.nf_conntrack_max` is
/// `net.netfilter.nf_conntrack_max` (legacy name, initial namespace only).
fn same_variable(path: &str) -> Vec<String> {
    match path {
        "net/netfilter/nf_conntrack_max" | "net/nf_conntrack_max" => vec![
            "net/netfilter/nf_conntrack_max".into(),
            "net/nf_conntrack_max".into(),
        ],
        _ => vec![path.to_string()],
    }
}

/// One parsed line with its file.
struct Located<'a> {
    file: &'a Path,
    line: Line,
}

impl Located<'_> {
    fn setter(&self) -> Setter {
        let (line, value, glob) = match &self.line {
            Line::Assign(a) => (a.line, a.value.clone(), a.is_glob().then(|| a.key.clone())),
            Line::Exclude { line, .. } => (*line, String::new(), None),
        };
        Setter {
            file: self.file.to_path_buf(),
            line,
            value,
            glob,
        }
    }

    fn value(&self) -> Option<&str> {
        match &self.line {
            Line::Assign(a) => Some(&a.value),
            Line::Exclude { .. } => None,
        }
    }
}

/// How the key at `path` (normalised, assumed to exist at boot) is set when
/// `applier` applies `ordered` files, followed by `trailing` (procps'
/// `/etc/sysctl.conf`; systemd-sysctl never reads it directly).
///
/// Globs are matched against the key itself (and its other names), not
/// against a list of keys: the question is "does this glob set my key".
pub fn setters_of(
    path: &str,
    ordered: &[ConfigFile],
    trailing: Option<&ConfigFile>,
    applier: Applier,
) -> Setters {
    let names = same_variable(path);
    let files: Vec<&ConfigFile> = match applier {
        Applier::SystemdSysctl => ordered.iter().collect(),
        Applier::ProcpsSystem => ordered.iter().chain(trailing).collect(),
    };
    // Only lines about this variable matter: its own names, and globs
    // matching one of them.
    let mut lines = Vec::new();
    for file in files {
        let (parsed, _) = parse_lines(&file.path, &file.text);
        for line in parsed {
            let key = line.path();
            let relevant = if sysctl_glob::is_glob(key) {
                names.iter().any(|n| sysctl_glob::matches(key, n))
            } else {
                names.iter().any(|n| n == key)
            };
            if relevant {
                lines.push(Located {
                    file: &file.path,
                    line,
                });
            }
        }
    }
    match applier {
        Applier::SystemdSysctl => systemd_order(&names, lines),
        Applier::ProcpsSystem => procps_order(&names, lines),
    }
}

/// systemd-sysctl: the ordered map, then globs for keys without an entry.
fn systemd_order(names: &[String], lines: Vec<Located<'_>>) -> Setters {
    let mut skipped = Vec::new();
    // The map, in order (entries replaced by a later line become None).
    let mut map: Vec<Option<Located<'_>>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in lines {
        let key = line.line.path().to_string();
        if let Some(&at) = index.get(&key) {
            let existing = map[at].as_mut().expect("indexed entries are present");
            if existing.value() == line.value() {
                // Same value: the entry keeps its place; name the latest line.
                *existing = line;
                continue;
            }
            let old = map[at].take().expect("indexed entries are present");
            let why = match (old.value(), line.value()) {
                (Some(_), None) if !sysctl_glob::is_glob(&key) => Skip::Cancelled,
                _ => Skip::Replaced,
            };
            skipped.push(Skipped {
                setter: old.setter(),
                why,
            });
        }
        index.insert(key, map.len());
        map.push(Some(line));
    }
    let explicit = |name: &String| index.contains_key(name.as_str());
    let mut writes = Vec::new();
    for entry in map.iter().flatten() {
        let key = entry.line.path();
        match (&entry.line, sysctl_glob::is_glob(key)) {
            (Line::Exclude { .. }, _) => skipped.push(Skipped {
                setter: entry.setter(),
                why: Skip::Exclusion,
            }),
            (Line::Assign(_), false) => writes.push(entry.setter()),
            (Line::Assign(_), true) => {
                let matched: Vec<&String> = names
                    .iter()
                    .filter(|n| sysctl_glob::matches(key, n))
                    .collect();
                if matched.iter().any(|n| !explicit(n)) {
                    writes.push(entry.setter());
                } else {
                    skipped.push(Skipped {
                        setter: entry.setter(),
                        why: Skip::ExplicitWins,
                    });
                }
            }
        }
    }
    skipped.sort_by(|a, b| (&a.setter.file, a.setter.line).cmp(&(&b.setter.file, b.setter.line)));
    Setters { writes, skipped }
}

/// procps `sysctl --system`: line by line; globs skip every key named by a
/// line of its own.
fn procps_order(names: &[String], lines: Vec<Located<'_>>) -> Setters {
    let explicit: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l.line.path())
        .filter(|k| !sysctl_glob::is_glob(k))
        .collect();
    let mut setters = Setters::default();
    for entry in &lines {
        let key = entry.line.path();
        let skip = match &entry.line {
            Line::Exclude { .. } => Some(Skip::Exclusion),
            Line::Assign(_) if !sysctl_glob::is_glob(key) => None,
            Line::Assign(_) => names
                .iter()
                .filter(|n| sysctl_glob::matches(key, n))
                .all(|n| explicit.contains(n.as_str()))
                .then_some(Skip::ExplicitWins),
        };
        match skip {
            None => setters.writes.push(entry.setter()),
            Some(why) => setters.skipped.push(Skipped {
                setter: entry.setter(),
                why,
            }),
        }
    }
    setters
}

/// Renders nfkit's sysctl.d file.
pub fn render(header: &str, settings: &[(SysctlKey, SysctlValue)]) -> String {
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
        let setters = setters_of("k", &ordered, None, Applier::SystemdSysctl);
        assert_eq!(setters.winner().unwrap().value, "etc");
        let conf = ConfigFile {
            path: "/etc/sysctl.conf".into(),
            text: "k=last\n".into(),
        };
        assert_eq!(
            setters_of("k", &ordered, Some(&conf), Applier::ProcpsSystem)
                .winner()
                .unwrap()
                .value,
            "last"
        );
    }

    #[test]
    fn render_round_trips() {
        let text = render(
            "# nfkit\n",
            &[(
                SysctlKey::parse("net.netfilter.nf_conntrack_max").unwrap(),
                SysctlValue::parse("500000").unwrap(),
            )],
        );
        assert_eq!(text, "# nfkit\nnet.netfilter.nf_conntrack_max = 500000\n");
        let (a, e) = parse(Path::new("x"), &text);
        assert!(e.is_empty());
        assert_eq!(a[0].value, "500000");
    }
}
