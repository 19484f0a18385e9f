//! `nfkit apply`: converge the persistent files and the running kernel to
//! the desired state.
//!
//! Order: plan everything first (files and runtime; any unreadable or
//! unparsable file stops the run before anything is written), take the run
//! lock, write the files (all or nothing: a failed write restores the files
//! already written), then converge the running kernel (modules first, so
//! that libkmod reads the new modprobe.d options, then sysctls). With
//! `--root` only files are written. A second run finds nothing to do and
//! writes nothing.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::desired::{Desired, Target};
use super::diff;
use super::files::{self, FileError, RunLock};
use super::plan::{self, FileChange, Layout, PlanError};
use super::runtime::{self, RuntimeChange, RuntimeFailure, RuntimeItem};
use crate::modules::Jobs;
use crate::system::Host;

/// Options of one apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Change nothing; report what would change.
    pub check: bool,
}

/// A file in the report.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The target it serves.
    pub target: &'static str,
    /// Path inside the root.
    pub path: PathBuf,
    /// `create`, `update`, `remove` or `unchanged`.
    pub action: &'static str,
    /// Unified diff (empty when unchanged).
    pub diff: String,
}

/// Result of `apply`.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// Nothing was changed on purpose.
    pub check: bool,
    /// The host layout detected.
    pub layout: Layout,
    /// The targets managed.
    pub targets: Vec<&'static str>,
    /// Files.
    pub files: Vec<FileReport>,
    /// Runtime differences (check) or changes made (apply).
    pub runtime: Vec<RuntimeChange>,
    /// Runtime items that could not be converged.
    pub failures: Vec<RuntimeFailure>,
    /// Differences left after converging (e.g. an option the loaded module
    /// does not accept, or one that takes effect only at the next load).
    pub remaining: Vec<RuntimeChange>,
    /// Notes (offline, warnings).
    pub notes: Vec<String>,
}

impl ApplyReport {
    /// Whether anything changed (or would change).
    pub fn any_change(&self) -> bool {
        self.files.iter().any(|f| f.action != "unchanged") || !self.runtime.is_empty()
    }
}

/// Errors that stop an apply before or while writing files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Planning failed: nothing was written.
    #[error("apply: nothing was changed")]
    Plan(#[from] PlanError),
    /// Taking the lock failed.
    #[error("apply")]
    Lock(#[source] FileError),
    /// A `[sysctl]` key does not exist on the running kernel.
    #[error(
        "apply: sysctl {key} does not exist on this kernel{}; nothing was changed",
        if .closest.is_empty() { String::new() } else { format!(" (closest: {})", .closest.join(", ")) }
    )]
    UnknownSysctl { key: String, closest: Vec<String> },
    /// Writing a file failed; the files written before were restored.
    #[error("apply: {} restored, nothing else changed", restored_note(.restored))]
    Write {
        #[source]
        source: FileError,
        restored: Vec<PathBuf>,
    },
}

fn restored_note(restored: &[PathBuf]) -> String {
    if restored.is_empty() {
        "no file had been written yet".into()
    } else {
        let names: Vec<String> = restored.iter().map(|p| p.display().to_string()).collect();
        format!("earlier files ({}) were", names.join(", "))
    }
}

impl crate::error::Hint for ApplyError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            // The cause (a source) has the hint.
            ApplyError::Plan(_) | ApplyError::Lock(_) | ApplyError::Write { .. } => None,
            ApplyError::UnknownSysctl { .. } => Some(
                "fix the key in nfkit.toml [sysctl]; keys of a module that is not loaded yet \
                 appear once it is (list the module in [modules] load)",
            ),
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

fn action(change: &FileChange) -> &'static str {
    match (&change.before, &change.after, change.changed) {
        (_, _, false) => "unchanged",
        (None, Some(_), true) => "create",
        (Some(_), None, true) => "remove",
        _ => "update",
    }
}

/// The targets for this desired state and layout.
pub fn targets_for(desired: &Desired, layout: &Layout) -> Vec<Target> {
    desired
        .persist
        .targets
        .clone()
        .unwrap_or_else(|| plan::default_targets(layout))
}

/// Writes every changed file; on failure restores those already written.
fn write_files(lock: &RunLock, root: &Path, changes: &[FileChange]) -> Result<(), ApplyError> {
    write_files_with(lock, root, changes, |root, change| match &change.after {
        Some(text) => ensure_parent(lock, root, &change.path).and_then(|()| {
            lock.write_atomic(root, &change.path, &crate::lossless::encode(text))
                .map(|_| ())
        }),
        None => lock.remove(root, &change.path),
    })
}

/// [`write_files`] with the forward write step given (tests inject faults).
fn write_files_with(
    lock: &RunLock,
    root: &Path,
    changes: &[FileChange],
    mut write: impl FnMut(&Path, &FileChange) -> Result<(), FileError>,
) -> Result<(), ApplyError> {
    let mut written: Vec<&FileChange> = Vec::new();
    for change in changes.iter().filter(|c| c.changed) {
        let result = write(root, change);
        if let Err(source) = result {
            let mut restored = Vec::new();
            for done in written.iter().rev() {
                let back = match &done.before {
                    Some(text) => lock
                        .write_atomic(root, &done.path, &crate::lossless::encode(text))
                        .map(|_| ()),
                    None => lock.remove(root, &done.path),
                };
                if back.is_ok() {
                    restored.push(done.path.clone());
                }
            }
            return Err(ApplyError::Write { source, restored });
        }
        written.push(change);
    }
    Ok(())
}

/// Creates the parent directory (0755) of an nfkit-owned file when missing.
fn ensure_parent(lock: &RunLock, root: &Path, path: &Path) -> Result<(), FileError> {
    match path.parent() {
        Some(parent) => lock.create_dir_all(root, parent),
        None => Ok(()),
    }
}

/// Pushes what the next boot would still get wrong (verify's next-boot
/// model, see [`super::boot_gaps`]) onto `remaining`, with the fix.
fn push_boot_gaps(
    remaining: &mut Vec<RuntimeChange>,
    root: &Path,
    desired: &Desired,
) -> Result<(), ApplyError> {
    let gaps = super::boot_gaps::next_boot_gaps(root, desired).map_err(PlanError::File)?;
    for gap in gaps {
        let mut lines = gap.why;
        lines.push(format!("fix: {}", gap.fix));
        remaining.push(RuntimeChange {
            item: RuntimeItem::NextBoot(gap.item),
            before: gap.boot,
            after: gap.desired,
            convergeable: false,
            note: Some(lines.join("\n  ")),
        });
    }
    Ok(())
}

/// Checks the `[sysctl]` keys against what the running kernel exposes,
/// before anything is changed. A `net.netfilter.nf_conntrack_*` key is
/// accepted while nf_conntrack is not loaded yet: it appears with the module,
/// which apply loads first (and converging reports it if it still does not).
fn check_sysctl_keys(host: &Host, desired: &Desired) -> Result<(), ApplyError> {
    if host.offline {
        return Ok(());
    }
    let sysctl = host.sysctl();
    let conntrack_loaded = sysctl
        .read(crate::conntrack::KEY_MAX)
        .ok()
        .flatten()
        .is_some();
    for key in desired.sysctl.keys() {
        let Ok(path) = sysctl.path_of(key.as_str()) else {
            continue; // validated as a key when nfkit.toml was parsed
        };
        if path.exists() {
            continue;
        }
        if key.as_str().starts_with("net.netfilter.nf_conntrack") && !conntrack_loaded {
            continue;
        }
        let siblings: Vec<String> = path
            .parent()
            .and_then(|dir| std::fs::read_dir(dir).ok())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let leaf = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = key
            .as_str()
            .rsplit_once('.')
            .map_or("", |(p, _)| p)
            .to_string();
        let closest =
            crate::modules::suggest::closest(&leaf, siblings.iter().map(String::as_str), 3)
                .into_iter()
                .map(|c| format!("{prefix}.{c}"))
                .collect();
        return Err(ApplyError::UnknownSysctl {
            key: key.to_string(),
            closest,
        });
    }
    Ok(())
}

/// Runs an apply (or a check) of `desired` on `host`. An apply takes the
/// run lock for its whole run; a caller that must read (or edit) the desired
/// state under the same hold uses [`apply_locked`].
pub fn apply(
    host: &Host,
    desired: &Desired,
    options: ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    if options.check {
        return run(host, desired, None, Jobs::auto());
    }
    let lock = files::lock_runs().map_err(ApplyError::Lock)?;
    run(host, desired, Some(&lock), Jobs::auto())
}

/// `apply --check`: plans and reports; writes nothing (it has no lock, so
/// it cannot) and changes nothing in the running kernel.
pub fn check(host: &Host, desired: &Desired) -> Result<ApplyReport, ApplyError> {
    run(host, desired, None, Jobs::auto())
}

/// An apply under a run lock the caller already holds.
pub fn apply_locked(
    host: &Host,
    desired: &Desired,
    lock: &RunLock,
    jobs: Jobs,
) -> Result<ApplyReport, ApplyError> {
    run(host, desired, Some(lock), jobs)
}

/// An apply with `lock`, a check without.
fn run(
    host: &Host,
    desired: &Desired,
    lock: Option<&RunLock>,
    jobs: Jobs,
) -> Result<ApplyReport, ApplyError> {
    let options = ApplyOptions {
        check: lock.is_none(),
    };
    let root = host.root.clone();
    let layout = plan::detect(&root);
    let targets = targets_for(desired, &layout);
    check_sysctl_keys(host, desired)?;
    let changes = plan::plan_files(&root, desired, &targets)?;
    // Every file the next boot reads must be readable before anything is
    // written (an unreadable one is not a masked one).
    super::nextboot::NextBoot::read(&root, &layout).map_err(PlanError::File)?;
    let mut notes = Vec::new();
    if let Some(lock) = lock {
        let mut dirs: Vec<PathBuf> = changes
            .iter()
            .filter_map(|c| files::resolve_under(&root, c.path.parent()?).ok())
            .collect();
        dirs.dedup();
        for dir in dirs {
            for stale in lock.remove_stale_temporaries(&dir) {
                notes.push(format!(
                    "removed {} left by an interrupted run",
                    stale.display()
                ));
            }
        }
    }
    let file_reports = changes
        .iter()
        .map(|c| FileReport {
            target: c.target.name(),
            path: c.path.clone(),
            action: action(c),
            diff: diff::unified(
                &c.path.display().to_string(),
                c.before.as_deref(),
                c.after.as_deref(),
            ),
        })
        .collect();
    if !targets.iter().any(|t| {
        matches!(
            t,
            Target::ModulesLoadD | Target::EtcModules | Target::IptablesConfig
        )
    }) && !desired.load_list().is_empty()
    {
        notes.push(
            "no module-list target on this host: modules are loaded at boot only by `nfkit boot` \
             (see contrib/ for the init scripts)"
                .to_string(),
        );
    }
    let mut report = ApplyReport {
        check: options.check,
        layout,
        targets: targets.iter().map(|t| t.name()).collect(),
        files: file_reports,
        runtime: Vec::new(),
        failures: Vec::new(),
        remaining: Vec::new(),
        notes,
    };
    if host.offline {
        report
            .notes
            .push("offline (--root): the running kernel was not used".into());
    }
    let Some(lock) = lock else {
        if !host.offline {
            let running = runtime::read_running(host, desired);
            report.runtime = runtime::diff_running(desired, &running);
        }
        // With the files as apply would leave them, the next boot's gaps are
        // what apply would report (when files change, the check says so).
        if !changes.iter().any(|c| c.changed) {
            push_boot_gaps(&mut report.remaining, &root, desired)?;
        }
        return Ok(report);
    };
    write_files(lock, &root, &changes)?;
    if !host.offline {
        let converged = runtime::converge(host, desired, runtime::OptionsFrom::ModprobeD, jobs);
        report.runtime = converged.changed();
        report.failures = converged.failures();
        report.remaining = runtime::remaining(host, desired, &report.failures);
    }
    push_boot_gaps(&mut report.remaining, &root, desired)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn seed() -> Desired {
        Desired::parse(
            "t",
            "[modules]\nload=[\"xt_state\"]\n[conntrack]\nmax=500000\nbuckets=65536\n[persist]\ntargets=[\"modules-load.d\",\"modprobe.d\",\"sysctl.d\"]\n",
        )
        .unwrap()
    }

    #[test]
    fn offline_apply_writes_then_second_run_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::offline(root.path());
        let report = apply(&host, &seed(), ApplyOptions::default()).unwrap();
        assert!(report.any_change());
        assert_eq!(
            report.files.iter().map(|f| f.action).collect::<Vec<_>>(),
            ["create", "create", "create"]
        );
        let conf = root.path().join("etc/modules-load.d/nfkit.conf");
        assert_eq!(
            fs::read_to_string(&conf).unwrap(),
            format!("{}nf_conntrack\nxt_state\n", plan::HEADER)
        );
        let mtime = fs::metadata(&conf).unwrap().mtime_nsec();
        let again = apply(&host, &seed(), ApplyOptions::default()).unwrap();
        assert!(!again.any_change(), "{again:?}");
        assert_eq!(fs::metadata(&conf).unwrap().mtime_nsec(), mtime);
        let check = apply(&host, &seed(), ApplyOptions { check: true }).unwrap();
        assert!(!check.any_change());
    }

    #[test]
    fn check_writes_nothing_and_shows_diffs() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::offline(root.path());
        let report = apply(&host, &seed(), ApplyOptions { check: true }).unwrap();
        assert!(report.any_change());
        assert!(report.files[0].diff.contains("+xt_state"));
        assert!(!root.path().join("etc").exists());
    }

    #[test]
    fn failed_write_restores_earlier_files() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc/modules-load.d")).unwrap();
        fs::write(root.path().join("etc/modules-load.d/nfkit.conf"), "old\n").unwrap();
        let changes = plan::plan_files(
            root.path(),
            &seed(),
            &targets_for(&seed(), &plan::detect(root.path())),
        )
        .unwrap();
        assert_eq!(changes.len(), 3);
        // The third write fails: the first (update) and second (create) are undone.
        let mut calls = 0;
        let lock = files::lock_runs().unwrap();
        let err = write_files_with(&lock, root.path(), &changes, |root, change| {
            calls += 1;
            if calls == 3 {
                return Err(FileError::Io {
                    op: "write",
                    path: change.path.clone(),
                    source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                });
            }
            ensure_parent(&lock, root, &change.path)?;
            lock.write_atomic(
                root,
                &change.path,
                change.after.as_ref().unwrap().as_bytes(),
            )
            .map(|_| ())
        })
        .unwrap_err();
        assert!(
            matches!(err, ApplyError::Write { ref restored, .. } if restored.len() == 2),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("etc/modules-load.d/nfkit.conf")).unwrap(),
            "old\n"
        );
        assert!(!root.path().join("etc/modprobe.d/nfkit.conf").exists());
        assert!(
            crate::error::message(&err).contains("No space left"),
            "{err}"
        );
        assert_eq!(
            crate::error::hint(&err).as_deref(),
            Some("the file system is full")
        );
    }

    #[test]
    fn unknown_sysctl_keys_are_refused_before_anything_changes() {
        let root = tempfile::tempdir().unwrap();
        let nf = root.path().join("proc/sys/net/netfilter");
        fs::create_dir_all(&nf).unwrap();
        for key in [
            "nf_conntrack_max",
            "nf_conntrack_tcp_loose",
            "nf_log_all_netns",
        ] {
            fs::write(nf.join(key), "1\n").unwrap();
        }
        let mut host = Host::offline(root.path());
        host.offline = false; // a fake live tree: the key check reads it
        let typo = Desired::parse(
            "t",
            "[sysctl]\n\"net.netfilter.nf_conntrack_tcp_lose\" = 0\n",
        )
        .unwrap();
        let err = check_sysctl_keys(&host, &typo).unwrap_err();
        assert_eq!(
            err.to_string(),
            "apply: sysctl net.netfilter.nf_conntrack_tcp_lose does not exist on this kernel \
             (closest: net.netfilter.nf_conntrack_tcp_loose); nothing was changed"
        );
        let fine = Desired::parse(
            "t",
            "[sysctl]\n\"net.netfilter.nf_conntrack_tcp_loose\" = 0\n",
        )
        .unwrap();
        assert!(check_sysctl_keys(&host, &fine).is_ok());
        // Without nf_conntrack loaded, its keys do not exist yet: accepted.
        fs::remove_file(nf.join("nf_conntrack_max")).unwrap();
        fs::remove_file(nf.join("nf_conntrack_tcp_loose")).unwrap();
        assert!(check_sysctl_keys(&host, &fine).is_ok());
        let other =
            Desired::parse("t", "[sysctl]\n\"net.netfilter.nf_log_al_netns\" = 1\n").unwrap();
        assert!(check_sysctl_keys(&host, &other).is_err());
    }

    #[test]
    fn unreadable_file_stops_before_writing() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::offline(root.path());
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/sysctl.d"), "not a directory").unwrap();
        let err = apply(&host, &seed(), ApplyOptions::default()).unwrap_err();
        assert!(matches!(err, ApplyError::Plan(_)), "{err}");
        assert!(
            !root.path().join("etc/modules-load.d").exists(),
            "nothing may be written"
        );
    }
}
