//! Setting conntrack limits through `/proc/sys` (plan: pure; apply: I/O).
//!
//! Semantics, like `sysctl -w` but safer:
//! - every value is validated before anything is written;
//! - a value already in place is not written again;
//! - outside the initial network namespace the limits are read-only
//!   (mode 0444, EACCES) because they are global: the request is refused up
//!   front with that explanation;
//! - after writing, the value the kernel holds is read back and reported
//!   (buckets round up to multiples of 512);
//! - if a later write fails, earlier writes of the same run are rolled back,
//!   and the error says so.

use serde::Serialize;

use super::limits::{self, Limit};
use super::{KEY_BUCKETS, KEY_MAX};
use crate::sysctl;
use crate::system::Host;

/// What to set. `None` leaves a limit alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetRequest {
    /// New `nf_conntrack_max` (validated; 0 only if explicitly allowed).
    pub max: Option<u32>,
    /// New bucket count (validated).
    pub buckets: Option<u32>,
    /// Raise only: a limit already higher than requested is kept (as
    /// kube-proxy does, so the two never fight over the value).
    pub never_lower: bool,
}

/// One limit's planned or performed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitChange {
    /// `max` or `buckets`.
    pub limit: &'static str,
    /// The sysctl key written.
    pub key: &'static str,
    /// Value before.
    pub before: u64,
    /// Value asked for.
    pub requested: u64,
    /// Value the kernel is expected to hold (buckets round up).
    pub expected: u64,
    /// Value read back after the write (`None` in a dry run).
    pub after: Option<u64>,
    /// Whether a write is (or was) needed.
    pub changed: bool,
    /// The running value is higher than requested and `never_lower` kept it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub kept_higher: bool,
}

/// Result of a set (or dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetReport {
    /// Whether nothing was written on purpose.
    pub dry_run: bool,
    /// One entry per requested limit, in write order.
    pub changes: Vec<LimitChange>,
}

impl SetReport {
    /// Whether anything changed (or would change).
    pub fn any_change(&self) -> bool {
        self.changes.iter().any(|c| c.changed)
    }
}

/// Why a set failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// Nothing to set.
    #[error("set conntrack limits: nothing to set")]
    NothingRequested,
    /// `--root` was given.
    #[error("set conntrack limits: the running kernel is not used with --root")]
    Offline,
    /// The conntrack sysctls do not exist.
    #[error("set conntrack limits: connection tracking is not present in this kernel")]
    NotPresent,
    /// Not the initial network namespace.
    #[error(
        "set {limit}: refused in this network namespace: conntrack \
         limits are global to the kernel and read-only outside the initial \
         namespace (this is a container or `unshare -n`); set them from the \
         host / hardware node"
    )]
    NotInitialNamespace { limit: Limit },
    /// Reading the current value failed.
    #[error("set conntrack limits")]
    Read(#[source] sysctl::Error),
    /// A write failed; `rolled_back` lists limits restored to their old value.
    #[error("set {limit}{}", rollback_note(.rolled_back, .rollback_failed))]
    Write {
        limit: Limit,
        #[source]
        source: Box<sysctl::Error>,
        rolled_back: Vec<&'static str>,
        rollback_failed: Option<String>,
    },
}

fn rollback_note(rolled_back: &[&'static str], failed: &Option<String>) -> String {
    let mut note = String::new();
    if !rolled_back.is_empty() {
        note.push_str(&format!(
            " (already-written {} restored to the previous value)",
            rolled_back.join(", ")
        ));
    }
    if let Some(f) = failed {
        note.push_str(&format!(" (restoring the previous value failed: {f})"));
    }
    note
}

impl crate::error::Hint for SetError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            SetError::NotPresent => Some("load it first: `nfkit modules load nf_conntrack`"),
            SetError::Offline => Some(
                "to prepare an image, write the limits into its persistent \
                 configuration instead (nfkit apply --root DIR)",
            ),
            SetError::NotInitialNamespace { .. } => Some(
                "run the command on the host (initial network namespace); \
                 per-container limits are bounded by the host's \
                 net.nf_conntrack_max",
            ),
            // The cause (a source) has the hint.
            SetError::Read(_) | SetError::Write { .. } => None,
            SetError::NothingRequested => Some("pass --max N and/or --buckets N"),
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

struct Step {
    limit: Limit,
    key: &'static str,
    requested: u32,
}

fn steps(request: SetRequest) -> Vec<Step> {
    // Buckets first: a resize can fail with ENOMEM, and then max is untouched.
    let mut steps = Vec::new();
    if let Some(b) = request.buckets {
        steps.push(Step {
            limit: Limit::Buckets,
            key: KEY_BUCKETS,
            requested: b,
        });
    }
    if let Some(m) = request.max {
        steps.push(Step {
            limit: Limit::Max,
            key: KEY_MAX,
            requested: m,
        });
    }
    steps
}

fn expected_value(limit: Limit, requested: u32) -> u64 {
    match limit {
        Limit::Max => requested.into(),
        Limit::Buckets => limits::effective_buckets(requested).into(),
    }
}

fn limit_name(limit: Limit) -> &'static str {
    match limit {
        Limit::Max => "max",
        Limit::Buckets => "buckets",
    }
}

/// Plans and (unless `dry_run`) applies `request`.
pub fn set_limits(host: &Host, request: SetRequest, dry_run: bool) -> Result<SetReport, SetError> {
    let steps = steps(request);
    if steps.is_empty() {
        return Err(SetError::NothingRequested);
    }
    if host.offline {
        return Err(SetError::Offline);
    }
    let sysctl = host.sysctl();
    let mut changes = Vec::new();
    for step in &steps {
        let before = sysctl
            .read_u64(step.key)
            .map_err(SetError::Read)?
            .ok_or(SetError::NotPresent)?;
        let expected = expected_value(step.limit, step.requested);
        let kept_higher = request.never_lower && before > expected;
        let changed = before != expected && !kept_higher;
        if changed && sysctl.is_read_only(step.key).map_err(SetError::Read)? == Some(true) {
            return Err(SetError::NotInitialNamespace { limit: step.limit });
        }
        changes.push(LimitChange {
            limit: limit_name(step.limit),
            key: step.key,
            before,
            requested: step.requested.into(),
            expected,
            after: None,
            changed,
            kept_higher,
        });
    }
    if dry_run {
        return Ok(SetReport { dry_run, changes });
    }
    for index in 0..changes.len() {
        let step = &steps[index];
        if !changes[index].changed {
            changes[index].after = Some(changes[index].before);
            continue;
        }
        if let Err(source) = sysctl.write(step.key, &step.requested.to_string()) {
            let source = match source.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM)
                    if host.network_namespace().initial == Some(false) =>
                {
                    return Err(SetError::NotInitialNamespace { limit: step.limit });
                }
                _ => source,
            };
            let (rolled_back, rollback_failed) = roll_back(&sysctl, &changes[..index]);
            return Err(SetError::Write {
                limit: step.limit,
                source: Box::new(source),
                rolled_back,
                rollback_failed,
            });
        }
        changes[index].after = sysctl.read_u64(step.key).map_err(SetError::Read)?;
    }
    Ok(SetReport { dry_run, changes })
}

fn roll_back(sysctl: &sysctl::Sysctl, done: &[LimitChange]) -> (Vec<&'static str>, Option<String>) {
    let mut restored = Vec::new();
    for change in done.iter().rev().filter(|c| c.changed) {
        match sysctl.write(change.key, &change.before.to_string()) {
            Ok(()) => restored.push(change.limit),
            Err(e) => return (restored, Some(e.to_string())),
        }
    }
    (restored, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn fake_host(max: &str, buckets: &str) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let nf = dir.path().join("proc/sys/net/netfilter");
        fs::create_dir_all(&nf).unwrap();
        fs::write(nf.join("nf_conntrack_max"), max).unwrap();
        fs::write(nf.join("nf_conntrack_buckets"), buckets).unwrap();
        let mut host = Host::offline(dir.path());
        host.offline = false; // a fake "live" tree: files only, no netlink here
        (dir, host)
    }

    #[test]
    fn same_value_writes_nothing() {
        let (dir, host) = fake_host("1000\n", "1024\n");
        let file = dir.path().join("proc/sys/net/netfilter/nf_conntrack_max");
        // Make the file unwritable: a write attempt would fail the test.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o444)).unwrap();
        let report = set_limits(
            &host,
            SetRequest {
                max: Some(1000),
                buckets: Some(1000),
                never_lower: false,
            },
            false,
        )
        .unwrap();
        assert!(!report.any_change());
        assert_eq!(report.changes[0].after, Some(1024)); // 1000 buckets → 1024
    }

    #[test]
    fn dry_run_plans_without_writing() {
        let (dir, host) = fake_host("1000\n", "1024\n");
        let report = set_limits(
            &host,
            SetRequest {
                max: Some(5000),
                buckets: None,
                never_lower: false,
            },
            true,
        )
        .unwrap();
        assert!(report.dry_run && report.any_change());
        assert_eq!(report.changes[0].before, 1000);
        assert_eq!(report.changes[0].expected, 5000);
        let on_disk =
            fs::read_to_string(dir.path().join("proc/sys/net/netfilter/nf_conntrack_max")).unwrap();
        assert_eq!(on_disk, "1000\n");
    }

    #[test]
    fn read_only_limit_is_refused_as_namespace_rule() {
        let (dir, host) = fake_host("1000\n", "1024\n");
        let file = dir.path().join("proc/sys/net/netfilter/nf_conntrack_max");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o444)).unwrap();
        let err = set_limits(
            &host,
            SetRequest {
                max: Some(5),
                buckets: None,
                never_lower: false,
            },
            false,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            SetError::NotInitialNamespace { limit: Limit::Max }
        ));
        assert!(err.to_string().contains("global"), "{err}");
    }

    #[test]
    fn never_lower_keeps_a_higher_value_and_still_raises() {
        let (dir, host) = fake_host("5000\n", "1024\n");
        let file = dir.path().join("proc/sys/net/netfilter/nf_conntrack_max");
        let report = set_limits(
            &host,
            SetRequest {
                max: Some(1000),
                buckets: Some(4096),
                never_lower: true,
            },
            false,
        )
        .unwrap();
        let max = report.changes.iter().find(|c| c.limit == "max").unwrap();
        assert!(max.kept_higher && !max.changed);
        assert_eq!(max.after, Some(5000));
        assert_eq!(fs::read_to_string(&file).unwrap(), "5000\n");
        let buckets = report
            .changes
            .iter()
            .find(|c| c.limit == "buckets")
            .unwrap();
        assert!(buckets.changed && !buckets.kept_higher);
        // Without never_lower the same request lowers max.
        let report = set_limits(
            &host,
            SetRequest {
                max: Some(1000),
                buckets: None,
                never_lower: false,
            },
            false,
        )
        .unwrap();
        assert!(report.changes[0].changed);
        assert_eq!(fs::read_to_string(&file).unwrap().trim(), "1000");
        // Equal is not "higher": nothing to do either way.
        let report = set_limits(
            &host,
            SetRequest {
                max: Some(1000),
                buckets: None,
                never_lower: true,
            },
            true,
        )
        .unwrap();
        assert!(!report.changes[0].changed && !report.changes[0].kept_higher);
    }

    #[test]
    fn roll_back_restores_changed_values_in_reverse() {
        let (dir, host) = fake_host("7\n", "2048\n");
        let changes = vec![
            LimitChange {
                limit: "buckets",
                key: KEY_BUCKETS,
                before: 1024,
                requested: 2048,
                expected: 2048,
                after: Some(2048),
                changed: true,
                kept_higher: false,
            },
            LimitChange {
                limit: "max",
                key: KEY_MAX,
                before: 1000,
                requested: 1000,
                expected: 1000,
                after: Some(1000),
                changed: false,
                kept_higher: false,
            },
        ];
        let (restored, failed) = roll_back(&host.sysctl(), &changes);
        assert_eq!(restored, vec!["buckets"]);
        assert_eq!(failed, None);
        let nf = dir.path().join("proc/sys/net/netfilter");
        assert_eq!(
            fs::read_to_string(nf.join("nf_conntrack_buckets")).unwrap(),
            "1024"
        );
        // Unchanged limits are not touched.
        assert_eq!(
            fs::read_to_string(nf.join("nf_conntrack_max")).unwrap(),
            "7\n"
        );
    }

    #[test]
    fn missing_conntrack_is_not_present() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = Host::offline(dir.path());
        host.offline = false;
        let err = set_limits(
            &host,
            SetRequest {
                max: Some(5),
                buckets: None,
                never_lower: false,
            },
            false,
        )
        .unwrap_err();
        assert!(matches!(err, SetError::NotPresent));
        assert!(crate::error::hint(&err).unwrap().contains("nf_conntrack"));
    }

    #[test]
    fn offline_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = set_limits(
            &Host::offline(dir.path()),
            SetRequest {
                max: Some(5),
                buckets: None,
                never_lower: false,
            },
            false,
        )
        .unwrap_err();
        assert!(matches!(err, SetError::Offline));
    }
}
