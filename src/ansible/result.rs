//! The one JSON object a module prints (pure): `changed`, `failed`, `msg`,
//! `hint`, `diff`, `warnings`, `ansible_facts` and the module's report.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::args::Mode;
use crate::error::ErrorObject;
use crate::persist::apply::{ApplyReport, FileReport};
use crate::persist::runtime::{RuntimeChange, RuntimeFailure};
use crate::persist::verify::VerifyReport;

/// A module's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskResult {
    /// Something changed (or would, in check mode).
    pub changed: bool,
    /// The task failed.
    pub failed: bool,
    /// One line for the user.
    pub msg: String,
    /// What to do about a failure.
    pub hint: Option<String>,
    /// Ansible diffs (`--diff`): `{prepared}` for files, before/after for
    /// runtime values.
    pub diff: Vec<Value>,
    /// Warnings Ansible shows.
    pub warnings: Vec<String>,
    /// The module's own fields (its report).
    pub fields: Map<String, Value>,
}

impl TaskResult {
    /// The object Ansible reads.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("changed".into(), Value::Bool(self.changed));
        out.insert("failed".into(), Value::Bool(self.failed));
        out.insert("msg".into(), Value::String(self.msg.clone()));
        if let Some(h) = &self.hint {
            out.insert("hint".into(), Value::String(h.clone()));
        }
        if !self.diff.is_empty() {
            out.insert("diff".into(), Value::Array(self.diff.clone()));
        }
        if !self.warnings.is_empty() {
            out.insert("warnings".into(), json!(self.warnings));
        }
        for (k, v) in &self.fields {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }

    /// A failed task from an error (nothing changed).
    pub fn error(error: ErrorObject) -> TaskResult {
        TaskResult {
            failed: true,
            msg: error.message,
            hint: error.hint,
            ..TaskResult::default()
        }
    }

    fn field(&mut self, name: &str, value: impl Serialize) {
        self.fields.insert(
            name.into(),
            serde_json::to_value(value).unwrap_or_else(|e| Value::String(e.to_string())),
        );
    }
}

/// Ansible diff entries of changed files.
pub fn file_diffs<'a>(files: impl IntoIterator<Item = &'a FileReport>) -> Vec<Value> {
    files
        .into_iter()
        .filter(|f| f.action != "unchanged" && !f.diff.is_empty())
        .map(|f| json!({ "prepared": f.diff }))
        .collect()
}

/// One before/after diff entry of runtime values (`ITEM = VALUE` lines).
pub fn runtime_diff(changes: &[RuntimeChange]) -> Option<Value> {
    if changes.is_empty() {
        return None;
    }
    let lines = |pick: fn(&RuntimeChange) -> &str| -> String {
        changes
            .iter()
            .map(|c| format!("{} = {}\n", c.item, pick(c)))
            .collect()
    };
    Some(json!({
        "before_header": "running kernel (before)",
        "after_header": "running kernel (after)",
        "before": lines(|c| c.before.as_str()),
        "after": lines(|c| c.after.as_str()),
    }))
}

/// The message and hint of what stops a run from converging: refused or
/// failed items first, then differences that remain.
fn not_converged(
    failures: &[RuntimeFailure],
    remaining: &[RuntimeChange],
) -> Option<(String, Option<String>)> {
    let mut parts = Vec::new();
    let mut hint = None;
    for f in failures {
        let why = f.error().map(|e| e.message.clone()).unwrap_or_default();
        parts.push(format!(
            "{} stays {} (wanted {}), {}: {why}",
            f.change.item,
            f.change.before,
            f.change.after,
            f.outcome_text()
        ));
        if hint.is_none() {
            hint = f.error().and_then(|e| e.hint.clone());
        }
    }
    for c in remaining {
        let mut part = format!(
            "still differs: {}: {} (wanted {})",
            c.item, c.before, c.after
        );
        if let Some(note) = &c.note {
            part.push_str(&format!(" ({note})"));
        }
        parts.push(part);
    }
    (!parts.is_empty()).then(|| (parts.join("; "), hint))
}

/// The result of `apply` (and of `kmod`'s persistent path), with the
/// nfkit.toml it wrote (`write_config`), if any.
pub fn apply(report: &ApplyReport, config: Option<&FileReport>, mode: Mode) -> TaskResult {
    let config_changed = config.is_some_and(|c| c.action != "unchanged");
    let mut result = TaskResult {
        changed: report.any_change() || config_changed,
        ..TaskResult::default()
    };
    let files_changed = report
        .files
        .iter()
        .chain(config)
        .filter(|f| f.action != "unchanged")
        .count();
    if mode.diff {
        result.diff = file_diffs(report.files.iter().chain(config));
        result.diff.extend(runtime_diff(&report.runtime));
    }
    match not_converged(&report.failures, &report.remaining) {
        Some((msg, hint)) => {
            result.failed = true;
            result.msg = msg;
            result.hint = hint.or_else(|| {
                Some(
                    "run `nfkit verify` on the host for the three-way view (desired, running, \
                     next boot)"
                        .into(),
                )
            });
        }
        None => {
            result.msg = match (result.changed, report.check) {
                (false, _) => "nothing to do: files and running kernel match".into(),
                (true, check) => format!(
                    "{} {files_changed} file{} and {} running value{}",
                    if check { "would change" } else { "changed" },
                    if files_changed == 1 { "" } else { "s" },
                    report.runtime.len(),
                    if report.runtime.len() == 1 { "" } else { "s" },
                ),
            };
        }
    }
    result.warnings = report
        .notes
        .iter()
        .filter(|n| !n.starts_with("offline (--root)"))
        .cloned()
        .collect();
    result.field("apply", report);
    if let Some(c) = config {
        result.field("config", c);
    }
    result
}

/// The result of `verify`: never changed; failed on drift only with
/// `fail_on_drift`.
pub fn verify(report: &VerifyReport, fail_on_drift: bool) -> TaskResult {
    let differs: Vec<&str> = report
        .rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.item.as_str())
        .collect();
    let mut result = TaskResult {
        failed: fail_on_drift && !report.ok,
        msg: if report.ok {
            "ok: desired, running and next boot agree".into()
        } else {
            let mut msg = format!("differs: {}", differs.join(", "));
            for p in &report.problems {
                msg.push_str(&format!("; problem: {p}"));
            }
            msg
        },
        ..TaskResult::default()
    };
    if result.failed {
        result.hint = Some("run nfkit.netfilter.apply with the same desired state".into());
    }
    result.field("drift", !report.ok);
    result.field("differs", &differs);
    result.field("verify", report);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::runtime::RuntimeItem;

    fn change(item: &str, before: &str, after: &str) -> RuntimeChange {
        RuntimeChange {
            item: RuntimeItem::Sysctl(item.into()),
            before: before.into(),
            after: after.into(),
            convergeable: true,
            note: None,
        }
    }

    #[test]
    fn runtime_diff_lists_each_item_before_and_after() {
        let d =
            runtime_diff(&[change("net.netfilter.nf_conntrack_max", "65536", "500000")]).unwrap();
        assert_eq!(d["before"], "net.netfilter.nf_conntrack_max = 65536\n");
        assert_eq!(d["after"], "net.netfilter.nf_conntrack_max = 500000\n");
        assert!(runtime_diff(&[]).is_none());
    }

    #[test]
    fn remaining_fails_the_task_with_each_item() {
        let (msg, _) = not_converged(&[], &[change("net.netfilter.x", "1", "2")]).unwrap();
        assert_eq!(msg, "still differs: net.netfilter.x: 1 (wanted 2)");
        assert!(not_converged(&[], &[]).is_none());
    }

    #[test]
    fn error_result_is_failed_and_unchanged() {
        let r = TaskResult::error(ErrorObject::text("boom").with_hint("do x")).to_json();
        assert_eq!(r["failed"], true);
        assert_eq!(r["changed"], false);
        assert_eq!(r["msg"], "boom");
        assert_eq!(r["hint"], "do x");
    }
}
