//! `--persist`: record edits in nfkit.toml, then apply the persistent state
//! from the file just written, all under ONE hold of the run lock (two
//! concurrent `--persist` runs cannot interleave: the second reads the
//! first's nfkit.toml and writes files from both edits). A dry run takes no
//! lock, so it cannot write: it reports what nfkit.toml and `apply` would
//! change.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::apply::{self, ApplyError, ApplyReport};
use super::desired::{Desired, DesiredError};
use super::diff;
use super::edit::{self, Edit};
use super::files::{self, FileError};
use crate::system::Host;

/// Where nfkit.toml is: `root` and the path inside it (absolute), and how
/// messages show it.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The root the path is resolved under (`/`, or `--root DIR`).
    pub root: PathBuf,
    /// The path inside the root.
    pub path: PathBuf,
    /// The path as shown to the user.
    pub shown: String,
}

/// What a `--persist` did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    /// Nothing was written on purpose.
    pub dry_run: bool,
    /// nfkit.toml as shown.
    pub config: String,
    /// `create`, `update` or `unchanged`.
    pub config_action: &'static str,
    /// Unified diff of nfkit.toml (empty when unchanged).
    pub config_diff: String,
    /// The apply of the new desired state (`check: true` in a dry run).
    pub apply: ApplyReport,
}

/// Why a `--persist` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Taking the run lock failed.
    #[error("persist")]
    Lock(#[source] FileError),
    /// Reading nfkit.toml failed.
    #[error("persist")]
    Read(#[source] FileError),
    /// The edited nfkit.toml is not valid (the file is not written).
    #[error("persist: nfkit.toml was not changed")]
    Edit(#[source] DesiredError),
    /// Writing nfkit.toml failed (it is left as it was).
    #[error("persist: nfkit.toml was not changed")]
    Write(#[source] FileError),
    /// Applying the new state failed.
    #[error("persist: nfkit.toml was updated, but")]
    Apply(#[source] ApplyError),
}

impl crate::error::Hint for RecordError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            RecordError::Edit(_) => Some("fix nfkit.toml by hand, then run the command again"),
            // The cause (a source) has the hint.
            RecordError::Lock(_)
            | RecordError::Read(_)
            | RecordError::Write(_)
            | RecordError::Apply(_) => None,
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

/// The new text of nfkit.toml and the state it holds.
fn edited(
    config: &ConfigFile,
    edits: &[Edit],
) -> Result<(Option<String>, String, Desired), RecordError> {
    let before = files::read_toml_under(&config.root, &config.path).map_err(RecordError::Read)?;
    let after = edit::apply_edits(&config.shown, before.as_deref().unwrap_or_default(), edits)
        .map_err(RecordError::Edit)?;
    let desired = Desired::parse(&config.shown, &after).map_err(RecordError::Edit)?;
    Ok((before, after, desired))
}

fn report(
    config: &ConfigFile,
    before: Option<&str>,
    after: &str,
    dry_run: bool,
    apply: ApplyReport,
) -> RecordReport {
    let changed = before != Some(after);
    RecordReport {
        dry_run,
        config: config.shown.clone(),
        config_action: match (before, changed) {
            (_, false) => "unchanged",
            (None, true) => "create",
            (Some(_), true) => "update",
        },
        config_diff: if changed {
            diff::unified(&config.path.display().to_string(), before, Some(after))
        } else {
            String::new()
        },
        apply,
    }
}

/// Records `edits` in nfkit.toml (keeping its comments and order) and
/// applies the result, under one lock hold.
pub fn record(
    host: &Host,
    config: &ConfigFile,
    edits: &[Edit],
) -> Result<RecordReport, RecordError> {
    let lock = files::lock_runs().map_err(RecordError::Lock)?;
    // Read under the lock: a concurrent run's edit is in what we read.
    let (before, after, desired) = edited(config, edits)?;
    if before.as_deref() != Some(after.as_str()) {
        if let Some(parent) = config.path.parent() {
            lock.create_dir_all(&config.root, parent)
                .map_err(RecordError::Write)?;
        }
        lock.write_atomic(&config.root, &config.path, after.as_bytes())
            .map_err(RecordError::Write)?;
    }
    let applied = apply::apply_locked(host, &desired, &lock, crate::modules::Jobs::auto())
        .map_err(RecordError::Apply)?;
    Ok(report(config, before.as_deref(), &after, false, applied))
}

/// What [`record`] would do; takes no lock and writes nothing.
pub fn dry_run(
    host: &Host,
    config: &ConfigFile,
    edits: &[Edit],
) -> Result<RecordReport, RecordError> {
    let (before, after, desired) = edited(config, edits)?;
    let checked = apply::check(host, &desired).map_err(RecordError::Apply)?;
    Ok(report(config, before.as_deref(), &after, true, checked))
}

/// The root and path of nfkit.toml for `host` (`--config PATH` is taken
/// as is; the default lives under the root).
pub fn config_file(host: &Host, config: Option<&Path>) -> ConfigFile {
    let (root, path) = match config {
        Some(p) => (PathBuf::from("/"), p.to_path_buf()),
        None => (
            host.root.clone(),
            PathBuf::from(super::desired::DEFAULT_PATH),
        ),
    };
    let shown = root
        .join(path.strip_prefix("/").unwrap_or(&path))
        .display()
        .to_string();
    ConfigFile { root, path, shown }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::testutil::write;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for d in ["etc/modules-load.d", "etc/modprobe.d", "etc/sysctl.d"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        dir
    }

    fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p.clone());
                    out.push((p, Vec::new()));
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn dry_run_reports_and_writes_nothing() {
        let dir = tree();
        write(
            dir.path(),
            "/etc/nfkit/nfkit.toml",
            "# mine\n[conntrack]\nmax = 1000\n",
        );
        let host = Host::offline(dir.path());
        let config = config_file(&host, None);
        let before = snapshot(dir.path());
        let r = dry_run(&host, &config, &[Edit::ConntrackMax(5000)]).unwrap();
        assert_eq!(snapshot(dir.path()), before);
        assert!(r.dry_run && r.apply.check);
        assert_eq!(r.config_action, "update");
        assert!(r.config_diff.contains("+max = 5000"), "{}", r.config_diff);
        assert!(r.apply.files.iter().any(|f| f.action == "create"));
    }

    #[test]
    fn record_writes_config_then_files() {
        let dir = tree();
        let host = Host::offline(dir.path());
        let config = config_file(&host, None);
        let r = record(&host, &config, &[Edit::ConntrackMax(5000)]).unwrap();
        assert_eq!(r.config_action, "create");
        let text = std::fs::read_to_string(dir.path().join("etc/nfkit/nfkit.toml")).unwrap();
        assert!(text.contains("max = 5000"), "{text}");
        assert!(
            std::fs::read_to_string(dir.path().join("etc/sysctl.d/90-nfkit.conf"))
                .unwrap()
                .contains("nf_conntrack_max = 5000")
        );
        let again = record(&host, &config, &[Edit::ConntrackMax(5000)]).unwrap();
        assert_eq!(again.config_action, "unchanged");
        assert!(again.config_diff.is_empty());
        assert!(!again.apply.any_change());
    }
}
