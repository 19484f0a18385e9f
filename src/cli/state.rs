//! `nfkit apply`, `verify`, `import`, `boot`, and the `--persist` path of
//! one-off commands: everything around the desired state (nfkit.toml).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{EXIT_DIFFERS, EXIT_ERROR, EXIT_OK, Output};
use crate::persist::apply::{self, ApplyOptions, ApplyReport};
use crate::persist::desired::{self, Desired};
use crate::persist::edit::{self, Edit};
use crate::persist::files;
use crate::persist::import::{self, ImportFrom};
use crate::persist::import_scope::{OutOfScope, Scope};
use crate::persist::runtime::{self, OptionsFrom};
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

/// Where nfkit.toml is: `--config`, else `/etc/nfkit/nfkit.toml` under the root.
pub fn config_path(host: &Host, config: &Option<PathBuf>) -> (PathBuf, PathBuf) {
    match config {
        Some(p) => (PathBuf::from("/"), p.clone()),
        None => (host.root.clone(), PathBuf::from(desired::DEFAULT_PATH)),
    }
}

/// Reads and validates nfkit.toml.
pub fn load_desired(host: &Host, config: &Option<PathBuf>) -> anyhow::Result<Desired> {
    let (root, path) = config_path(host, config);
    let shown = root.join(path.strip_prefix("/").unwrap_or(&path));
    let text = files::read_under(&root, &path)?.with_context(|| {
        format!(
            "read desired state {}: no such file (create it, or start from `nfkit import > {}`)",
            shown.display(),
            shown.display()
        )
    })?;
    Ok(Desired::parse(&shown.display().to_string(), &text)?)
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
            .map(|c| c.item.len())
            .max()
            .unwrap_or(0);
        if show_diff {
            let _ = writeln!(out, "  {:<width$}  {:<16} AFTER", "ITEM", "BEFORE");
        }
        for c in &report.runtime {
            let _ = writeln!(out, "  {:<width$}  {:<16} {}", c.item, c.before, c.after);
            if let Some(note) = &c.note {
                let _ = writeln!(out, "  {:<width$}  ({note})", "");
            }
        }
    }
    for c in &report.remaining {
        let _ = writeln!(
            out,
            "still differs: {}: {} (wanted {})",
            c.item, c.before, c.after
        );
        if let Some(note) = &c.note {
            let _ = writeln!(out, "  {note}");
        }
    }
    for f in &report.failures {
        let _ = writeln!(out, "failed: {}: {}", f.item, f.error);
        if let Some(h) = &f.hint {
            let _ = writeln!(out, "  hint: {h}");
        }
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

/// `nfkit apply`.
pub(super) fn run_apply(
    host: &Host,
    config: &Option<PathBuf>,
    args: ApplyArgs,
    output: Output,
) -> anyhow::Result<u8> {
    let desired = load_desired(host, config)?;
    let report = apply::apply(host, &desired, ApplyOptions { check: args.check })?;
    output.emit(&report, |out| render_apply(out, &report, args.diff))?;
    Ok(if !report.failures.is_empty() {
        EXIT_ERROR
    } else if (args.check && report.any_change()) || !report.remaining.is_empty() {
        EXIT_DIFFERS
    } else {
        EXIT_OK
    })
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
    let report = verify::verify(host, &desired);
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
    if imported.sources.is_empty() {
        eprintln!(
            "nfkit: note: no configuration found to import under {}",
            host.root.display()
        );
    }
    // The comments travel with the TOML into a file; say it where it is seen.
    if !output.json && !output.quiet {
        let added = imported.added().count();
        if added > 0 {
            eprintln!(
                "nfkit: note: --all added {added} item{} beyond the admin's netfilter configuration (each listed in the output's comments)",
                if added == 1 { "" } else { "s" }
            );
        }
        for line in summary.iter().filter(|l| l.starts_with("not imported")) {
            eprintln!("nfkit: note: {line}");
        }
    }
    Ok(EXIT_OK)
}

/// `nfkit boot`: applies the persisted state at boot (hosts without systemd).
pub(super) fn run_boot(
    host: &Host,
    config: &Option<PathBuf>,
    output: Output,
) -> anyhow::Result<u8> {
    anyhow::ensure!(
        !host.offline,
        "boot: applies the state to the running kernel, which --root does not use"
    );
    let desired = load_desired(host, config)?;
    let (done, failures) = runtime::converge(host, &desired, OptionsFrom::Desired);
    #[derive(Serialize)]
    struct BootJson<'a> {
        changes: &'a [runtime::RuntimeChange],
        failures: &'a [runtime::RuntimeFailure],
    }
    let json = BootJson {
        changes: &done,
        failures: &failures,
    };
    output.emit(&json, |out| {
        for c in &done {
            let _ = writeln!(out, "{}: {} -> {}", c.item, c.before, c.after);
        }
        for f in &failures {
            let _ = writeln!(out, "failed: {}: {}", f.item, f.error);
        }
        if done.is_empty() && failures.is_empty() {
            let _ = writeln!(out, "nothing to do");
        }
    })?;
    Ok(if failures.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}

/// `--persist`: records `edits` in nfkit.toml (keeping its comments), then
/// applies the persistent files.
pub(super) fn persist(
    host: &Host,
    config: &Option<PathBuf>,
    edits: &[Edit],
    output: Output,
) -> anyhow::Result<u8> {
    let (root, path) = config_path(host, config);
    let shown = root
        .join(path.strip_prefix("/").unwrap_or(&path))
        .display()
        .to_string();
    let _lock = files::lock_runs()?;
    let before = files::read_under(&root, &path)?.unwrap_or_default();
    let after = edit::apply_edits(&shown, &before, edits)?;
    if after != before {
        if let Some(parent) = path.parent() {
            let real = files::resolve_under(&root, parent)?;
            std::fs::create_dir_all(&real)
                .with_context(|| format!("create directory {}", real.display()))?;
        }
        files::write_atomic(&root, &path, after.as_bytes())?;
    }
    drop(_lock);
    let desired = Desired::parse(&shown, &after)?;
    let report = apply::apply(host, &desired, ApplyOptions::default())?;
    if !output.json && !output.quiet {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "persisted in {shown}{}",
            if after == before {
                " (already there)"
            } else {
                ""
            }
        );
        render_apply(&mut text, &report, false);
        print!("{text}");
    }
    Ok(if report.failures.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}
