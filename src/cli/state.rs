//! `nfkit apply`, `verify`, `import`, `boot`, and the `--persist` path of
//! one-off commands: everything around the desired state (nfkit.toml).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{EXIT_DIFFERS, EXIT_ERROR, EXIT_OK, Output};
use crate::persist::apply::{self, ApplyReport};
use crate::persist::desired::Desired;
use crate::persist::edit::Edit;
use crate::persist::files;
use crate::persist::import::{self, ImportFrom};
use crate::persist::import_scope::{OutOfScope, Scope};
use crate::persist::record::{self, RecordReport};
use crate::persist::runtime::{self, OptionsFrom, RuntimeChange, RuntimeFailure};
use crate::persist::verify::{self, VerifyReport};
use crate::system::Host;

/// `nfkit apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Change nothing; exit 3 when anything would change.
    #[arg(long)]
    check: bool,
    /// Show unified diffs of the files and a before/after table of runtime values.
    #[arg(long)]
    diff: bool,
    #[command(flatten)]
    jobs: super::modules::JobsArg,
}

/// `nfkit boot`.
#[derive(Debug, Args, Default)]
pub struct BootArgs {
    #[command(flatten)]
    pub(super) jobs: super::modules::JobsArg,
}

impl ApplyArgs {
    /// What this apply may change.
    pub(super) fn writes(&self) -> crate::confine::policy::Writes {
        use crate::confine::policy::Writes;
        if self.check {
            Writes::NONE
        } else {
            Writes::APPLY
        }
    }
}

/// `nfkit import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Which host family's files to read when no PATH is given.
    #[arg(long, value_enum, default_value = "auto")]
    from: FromArg,
    /// Also take vendor defaults (/usr/lib, /lib, /usr/local/lib) and
    /// modules outside the netfilter layer, listing each added item.
    #[arg(long)]
    all: bool,
    /// Files to read instead (kind told from the name; still only the
    /// netfilter layer unless --all).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FromArg {
    Auto,
    Rhel,
    Pcs,
    Debian,
}

/// Reads and validates nfkit.toml (`--config`, else `/etc/nfkit/nfkit.toml`
/// under the root).
pub fn load_desired(host: &Host, config: &Option<PathBuf>) -> anyhow::Result<Desired> {
    let file = record::config_file(host, config.as_deref());
    let shown = &file.shown;
    let text = files::read_toml_under(&file.root, &file.path)?.with_context(|| {
        format!(
            "read desired state {shown}: no such file (create it, or start from `nfkit import > {shown}`)"
        )
    })?;
    Ok(Desired::parse(shown, &text)?)
}

fn render_change(out: &mut String, c: &RuntimeChange, width: usize) {
    let _ = writeln!(
        out,
        "  {:<width$}  {:<16} {}",
        c.item.to_string(),
        c.before,
        c.after
    );
    if let Some(note) = &c.note {
        let _ = writeln!(out, "  {:<width$}  ({note})", "");
    }
}

fn render_remaining(out: &mut String, remaining: &[RuntimeChange]) {
    for c in remaining {
        let _ = writeln!(
            out,
            "still differs: {}: {} (wanted {})",
            c.item, c.before, c.after
        );
        if let Some(note) = &c.note {
            let _ = writeln!(out, "  {note}");
        }
    }
}

fn render_apply(out: &mut String, report: &ApplyReport, show_diff: bool) {
    let _ = writeln!(out, "targets: {}", report.targets.join(", "));
    for f in &report.files {
        let verb = match (report.check, f.action) {
            (true, "create") => "would create",
            (true, "update") => "would update",
            (true, "remove") => "would remove",
            (_, a) => a,
        };
        let _ = writeln!(out, "  {verb:<12} {}", f.path.display());
        if show_diff && !f.diff.is_empty() {
            for line in f.diff.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    if !report.runtime.is_empty() {
        let _ = writeln!(
            out,
            "running kernel{}:",
            if report.check { " (would change)" } else { "" }
        );
        let width = report
            .runtime
            .iter()
            .map(|c| c.item.to_string().len())
            .max()
            .unwrap_or(0);
        if show_diff {
            let _ = writeln!(out, "  {:<width$}  {:<16} AFTER", "ITEM", "BEFORE");
        }
        for c in &report.runtime {
            render_change(out, c, width);
        }
    }
    render_remaining(out, &report.remaining);
    if !report.failures.is_empty() {
        // The failures themselves go to stderr (Output::failures).
        let _ = writeln!(
            out,
            "not changed: {} (see the errors)",
            report
                .failures
                .iter()
                .map(|f| f.change.item.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
    if !report.any_change() && report.failures.is_empty() && report.remaining.is_empty() {
        let _ = writeln!(
            out,
            "nothing to do: files and running kernel match the desired state"
        );
    }
}

/// Exit code of an apply: 1 when an item was refused or failed, 3 when
/// something differs (`--check` with changes, or `remaining`), else 0.
fn apply_exit(report: &ApplyReport) -> u8 {
    if !report.failures.is_empty() {
        EXIT_ERROR
    } else if (report.check && report.any_change()) || !report.remaining.is_empty() {
        EXIT_DIFFERS
    } else {
        EXIT_OK
    }
}

/// `nfkit apply`.
pub(super) fn run_apply(
    host: &Host,
    config: &Option<PathBuf>,
    args: ApplyArgs,
    output: Output,
) -> anyhow::Result<u8> {
    let report = if args.check {
        apply::check(host, &load_desired(host, config)?)?
    } else {
        // nfkit.toml is read under the lock: a concurrent `--persist` has
        // either written both nfkit.toml and the files, or not started.
        let lock = files::lock_runs()?;
        apply::apply_locked(host, &load_desired(host, config)?, &lock, args.jobs.jobs())?
    };
    output.failures(&report.failures);
    output.emit(&report, |out| render_apply(out, &report, args.diff))?;
    Ok(apply_exit(&report))
}

fn render_verify(out: &mut String, report: &VerifyReport) {
    let w = report
        .rows
        .iter()
        .map(|r| r.item.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<w$}  {:<10} {:<12} {:<12} FROM",
        "ITEM", "DESIRED", "RUNNING", "NEXT BOOT"
    );
    for r in &report.rows {
        let _ = writeln!(
            out,
            "{:<w$}  {:<10} {:<12} {:<12} {}{}",
            r.item,
            r.desired,
            r.running.as_deref().unwrap_or("-"),
            r.boot,
            r.boot_source.as_deref().unwrap_or("-"),
            if r.ok { "" } else { "   << differs" }
        );
        for n in &r.notes {
            let _ = writeln!(out, "{:<w$}    {n}", "");
        }
    }
    for p in &report.problems {
        let _ = writeln!(out, "problem: {p}");
    }
    if let Some(hook) = &report.boot_hook {
        let _ = writeln!(out, "boot hook: `nfkit boot` runs from {hook}");
    }
    for h in &report.helpers {
        if let Some(w) = &h.warning {
            let _ = writeln!(out, "warning: {w}");
            let _ = writeln!(out, "  fix: {}", h.fix);
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if report.ok {
            "ok: desired, running and next boot agree"
        } else {
            "differs: see the rows marked above"
        }
    );
}

/// `nfkit verify`.
pub(super) fn run_verify(
    host: &Host,
    config: &Option<PathBuf>,
    output: Output,
) -> anyhow::Result<u8> {
    let desired = load_desired(host, config)?;
    let report = verify::verify(host, &desired)?;
    output.emit(&report, |out| render_verify(out, &report))?;
    Ok(if report.ok { EXIT_OK } else { EXIT_DIFFERS })
}

#[derive(Serialize)]
struct ImportJson<'a> {
    toml: String,
    desired: &'a Desired,
    comments: &'a [String],
    sources: &'a [PathBuf],
    scope: Scope,
    /// Items `--all` added (empty without it).
    added: Vec<&'a OutOfScope>,
    /// Items not imported, with why.
    skipped: Vec<&'a OutOfScope>,
    summary: Vec<String>,
}

/// `nfkit import`: prints nfkit.toml on stdout.
pub(super) fn run_import(host: &Host, args: ImportArgs, output: Output) -> anyhow::Result<u8> {
    let from = match args.from {
        FromArg::Auto => ImportFrom::Auto,
        FromArg::Rhel => ImportFrom::Rhel,
        FromArg::Pcs => ImportFrom::Pcs,
        FromArg::Debian => ImportFrom::Debian,
    };
    let scope = if args.all {
        Scope::All
    } else {
        Scope::Netfilter
    };
    let imported = import::import(&host.root, from, scope, &args.paths)?;
    let text = imported.render();
    let summary = imported.summary();
    let json = ImportJson {
        toml: text.clone(),
        desired: &imported.desired,
        comments: &imported.comments,
        sources: &imported.sources,
        scope,
        added: imported.added().collect(),
        skipped: imported.skipped().collect(),
        summary: summary.clone(),
    };
    // The TOML is the product even with -q: it is what the user redirects.
    let out = Output {
        quiet: false,
        ..output
    };
    out.emit(&json, |o| o.push_str(&text))?;
    let mut notes = Vec::new();
    if imported.sources.is_empty() {
        notes.push(format!(
            "no configuration found to import under {}",
            host.root.display()
        ));
    }
    // The comments travel with the TOML into a file; say it where it is seen.
    let added = imported.added().count();
    if added > 0 {
        notes.push(format!(
            "--all added {added} item{} beyond the admin's netfilter configuration (each listed in the output's comments)",
            if added == 1 { "" } else { "s" }
        ));
    }
    notes.extend(
        summary
            .iter()
            .filter(|l| l.starts_with("not imported"))
            .cloned(),
    );
    output.notes(notes);
    Ok(EXIT_OK)
}

/// `nfkit boot`: applies the persisted state at boot (hosts without systemd).
pub(super) fn run_boot(
    host: &Host,
    config: &Option<PathBuf>,
    args: BootArgs,
    output: Output,
) -> anyhow::Result<u8> {
    anyhow::ensure!(
        !host.offline,
        "boot: applies the state to the running kernel, which --root does not use"
    );
    let desired = load_desired(host, config)?;
    let converged = runtime::converge(host, &desired, OptionsFrom::Desired, args.jobs.jobs());
    let changes = converged.changed();
    let failures = converged.failures();
    let remaining = runtime::remaining(host, &desired, &failures);
    #[derive(Serialize)]
    struct BootJson<'a> {
        changes: &'a [RuntimeChange],
        failures: &'a [RuntimeFailure],
        remaining: &'a [RuntimeChange],
    }
    let json = BootJson {
        changes: &changes,
        failures: &failures,
        remaining: &remaining,
    };
    output.failures(&failures);
    output.emit(&json, |out| {
        for c in &changes {
            let _ = writeln!(out, "{}: {} -> {}", c.item, c.before, c.after);
        }
        render_remaining(out, &remaining);
        if changes.is_empty() && failures.is_empty() && remaining.is_empty() {
            let _ = writeln!(out, "nothing to do");
        }
    })?;
    Ok(if failures.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}

/// A one-off command's report with its `--persist` result: the command's
/// own fields (absent with `--root`, where the kernel is not used) and
/// `persist`.
#[derive(Serialize)]
pub(super) struct WithPersist<'a, T: Serialize> {
    #[serde(flatten)]
    pub report: Option<&'a T>,
    pub persist: &'a RecordReport,
}

/// `--persist`: records `edits` in nfkit.toml (keeping its comments) and
/// applies the persistent files from it under one lock hold; with
/// `dry_run`, only reports what that would change. Returns the report and
/// its exit code (a dry run exits 0 unless it fails).
pub(super) fn persist(
    host: &Host,
    config: &Option<PathBuf>,
    edits: &[Edit],
    dry_run: bool,
) -> anyhow::Result<(RecordReport, u8)> {
    let file = record::config_file(host, config.as_deref());
    let report = if dry_run {
        record::dry_run(host, &file, edits)?
    } else {
        record::record(host, &file, edits)?
    };
    let code = if dry_run && report.apply.failures.is_empty() {
        EXIT_OK
    } else {
        apply_exit(&report.apply)
    };
    Ok((report, code))
}

/// Text of a `--persist` report.
pub(super) fn render_persist(out: &mut String, report: &RecordReport) {
    let _ = writeln!(
        out,
        "{} {}{}",
        if report.dry_run {
            "would persist in"
        } else {
            "persisted in"
        },
        report.config,
        if report.config_action == "unchanged" {
            " (already there)"
        } else {
            ""
        }
    );
    if report.dry_run {
        for line in report.config_diff.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    render_apply(out, &report.apply, report.dry_run);
}

/// Emits a one-off command's report (`None` offline) with its `--persist`
/// result through the one output path.
pub(super) fn emit_with_persist<T: Serialize>(
    output: Output,
    own: Option<&T>,
    own_text: impl FnOnce(&mut String),
    persisted: &RecordReport,
) -> anyhow::Result<()> {
    output.failures(&persisted.apply.failures);
    let json = WithPersist {
        report: own,
        persist: persisted,
    };
    output.emit(&json, |out| {
        own_text(out);
        render_persist(out, persisted);
    })
}
