//! `nfkit modules list|resolve|load|unload`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::num::NonZeroUsize;

use clap::{Args, Subcommand};

use super::{EXIT_ERROR, EXIT_OK, Output};
use crate::modules::error::ErrorInfo;
use crate::modules::options::{EffectiveOption, OptionSource};
use crate::modules::removal::{Role, StepResult};
use crate::modules::{self, Jobs, LoadFlags, LoadOutcome, SeqAction, SeqStep, UnloadFlags};
use crate::system::Host;
use anyhow::Context as _;

/// `nfkit modules`.
#[derive(Debug, Args)]
pub struct ModulesArgs {
    #[command(subcommand)]
    action: ModulesAction,
}

impl ModulesArgs {
    /// What this command may change: only `load --persist` writes files
    /// (and nfkit.toml); loading and unloading are system calls
    /// (`finit_module`, `delete_module`), not file writes.
    pub(super) fn writes(&self) -> crate::confine::policy::Writes {
        use crate::confine::policy::Writes;
        match &self.action {
            ModulesAction::Load {
                dry_run: false,
                persist: true,
                ..
            } => Writes::PERSIST,
            _ => Writes::NONE,
        }
    }
}

/// Which module tree to use.
#[derive(Debug, Args)]
struct ReleaseArg {
    /// Use the modules of kernel release R (DIR/lib/modules/R) instead of
    /// the running kernel's (or, with --root, the only release there).
    #[arg(long, value_name = "R")]
    kernel_release: Option<String>,
}

/// `--jobs N`: how many modules a load inserts at once (`modules load`,
/// `apply`, `boot`).
#[derive(Debug, Args, Default)]
pub(super) struct JobsArg {
    /// Insert up to N modules at once, each as soon as what it needs is in
    /// (default: online CPUs, at most 4; 1 = one after another, in
    /// modprobe's order).
    #[arg(long, short = 'j', value_name = "N", value_parser = parse_jobs)]
    jobs: Option<NonZeroUsize>,
}

impl JobsArg {
    /// The loader's setting.
    pub(super) fn jobs(&self) -> Jobs {
        self.jobs.map_or(Jobs::auto(), Jobs::exactly)
    }
}

fn parse_jobs(s: &str) -> Result<NonZeroUsize, String> {
    s.parse::<NonZeroUsize>()
        .ok()
        .filter(|n| n.get() <= Jobs::MAX)
        .ok_or_else(|| format!("expected a number from 1 to {}", Jobs::MAX))
}

#[derive(Debug, Subcommand)]
enum ModulesAction {
    /// Loaded modules (netfilter ones unless --all), with size, refcount,
    /// holders and state; built-in modules too.
    List {
        /// All modules, not only netfilter ones.
        #[arg(long)]
        all: bool,
    },
    /// What each name resolves to: real module, load sequence (deps,
    /// softdeps), state, blacklist, install command, options, parameters.
    Resolve {
        #[command(flatten)]
        release: ReleaseArg,
        /// Module names or aliases (e.g. ip_conntrack, ipt_state).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Load modules like modprobe (deps, softdeps, modprobe.d options);
    /// never runs install commands. OPTION=VALUE words after a name are
    /// that module's options.
    Load {
        #[command(flatten)]
        release: ReleaseArg,
        /// Show what would be inserted; insert nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Apply the modprobe.d blacklist to names too, not only to aliases
        /// (modprobe -b).
        #[arg(long, short = 'b')]
        apply_blacklist: bool,
        /// Ignore the module's install command and softdeps and load the
        /// module itself (modprobe -i).
        #[arg(long, short = 'i')]
        ignore_install: bool,
        #[command(flatten)]
        jobs: JobsArg,
        /// Also record the modules (and their options) in nfkit.toml and write
        /// the persistent files, so they load at every boot.
        #[arg(long)]
        persist: bool,
        /// NAME [OPTION=VALUE...] NAME...
        #[arg(required = true, value_name = "NAME [OPTION=VALUE...]")]
        args: Vec<String>,
    },
    /// Unload modules like modprobe -r: refuse if in use (naming the
    /// holders), then remove dependencies left unused.
    Unload {
        #[command(flatten)]
        release: ReleaseArg,
        /// Show what would be removed; remove nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Ignore remove commands and softdeps (modprobe -r -i).
        #[arg(long, short = 'i')]
        ignore_install: bool,
        /// Module names or aliases.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

pub(super) fn run(
    host: &Host,
    config: &Option<std::path::PathBuf>,
    args: ModulesArgs,
    output: Output,
) -> anyhow::Result<u8> {
    match args.action {
        ModulesAction::List { all } => {
            let r = modules::list(host, all)?;
            output.emit(&r, |out| render_list(out, &r))?;
            Ok(EXIT_OK)
        }
        ModulesAction::Resolve { release, names } => {
            let r = modules::resolve(host, release.kernel_release.as_deref(), &names)?;
            output.emit(&r, |out| render_resolve(out, &r, output.verbose))?;
            report_errors(output, r.results.iter().filter_map(|x| x.error.as_ref()));
            report_libkmod_log(output, &r.libkmod_log);
            Ok(if r.ok() { EXIT_OK } else { EXIT_ERROR })
        }
        ModulesAction::Load {
            release,
            dry_run,
            apply_blacklist,
            ignore_install,
            jobs,
            persist,
            args,
        } => {
            let requests = modules::parse_load_args(&args)?;
            let edits = if persist {
                persist_edits(&requests).context("--persist: cannot record this in nfkit.toml")?
            } else {
                Vec::new()
            };
            if persist && host.offline {
                // Offline: record and write the image's files only.
                let (persisted, code) = super::state::persist(host, config, &edits, dry_run)?;
                super::state::emit_with_persist::<modules::LoadReport>(
                    output,
                    None,
                    |_| {},
                    &persisted,
                )?;
                return Ok(code);
            }
            let flags = LoadFlags {
                dry_run,
                apply_blacklist,
                ignore_install,
                jobs: jobs.jobs(),
            };
            let r = modules::load(host, release.kernel_release.as_deref(), &requests, flags)?;
            report_errors(
                output,
                r.results
                    .iter()
                    .flat_map(|x| errors_of(&x.error, &x.modules, |m| &m.error)),
            );
            report_libkmod_log(output, &r.libkmod_log);
            if !persist || !r.ok() {
                // A failed load is not recorded.
                output.emit(&r, |out| render_load(out, &r))?;
                return Ok(if r.ok() { EXIT_OK } else { EXIT_ERROR });
            }
            let (persisted, code) = super::state::persist(host, config, &edits, dry_run)?;
            super::state::emit_with_persist(
                output,
                Some(&r),
                |out| render_load(out, &r),
                &persisted,
            )?;
            Ok(code)
        }
        ModulesAction::Unload {
            release,
            dry_run,
            ignore_install,
            names,
        } => {
            let flags = UnloadFlags {
                dry_run,
                ignore_install,
            };
            let r = modules::unload(host, release.kernel_release.as_deref(), &names, flags)?;
            output.emit(&r, |out| render_unload(out, &r))?;
            report_errors(
                output,
                r.results
                    .iter()
                    .flat_map(|x| errors_of(&x.error, &x.modules, |m| &m.error)),
            );
            report_libkmod_log(output, &r.libkmod_log);
            Ok(if r.ok() { EXIT_OK } else { EXIT_ERROR })
        }
    }
}

/// Per-name errors go to stderr in text mode (in JSON they are part of the
/// report), one `nfkit: error:` line, the `libkmod:` lines libkmod logged
/// for it, and one `hint:` line each.
fn report_errors<'a>(output: Output, errors: impl Iterator<Item = &'a ErrorInfo>) {
    if output.json {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    for e in errors {
        let _ = writeln!(stderr, "nfkit: error: {}", e.error.message);
        for line in &e.libkmod {
            let _ = writeln!(stderr, "libkmod: {line}");
        }
        if let Some(h) = &e.error.hint {
            let _ = writeln!(stderr, "hint: {h}");
        }
    }
}

fn render_list(out: &mut String, r: &modules::ListReport) {
    let w = r
        .modules
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:<w$}  {:>8}  {:>4}  {:<8}  HOLDERS",
        "MODULE", "SIZE", "REFS", "STATE"
    );
    for m in &r.modules {
        let _ = writeln!(
            out,
            "{:<w$}  {:>8}  {:>4}  {:<8}  {}",
            m.name,
            m.size.map_or("-".into(), |s| s.to_string()),
            m.refcount.map_or("-".into(), |s| s.to_string()),
            m.state,
            if m.holders.is_empty() {
                "-".into()
            } else {
                m.holders.join(",")
            }
        );
    }
    if r.modules.is_empty() {
        let _ = writeln!(
            out,
            "(no {}modules loaded)",
            if r.all { "" } else { "netfilter " }
        );
    }
    if let Some(n) = &r.note {
        let _ = writeln!(out, "note: {n}");
    }
}

fn seq_line(seq: &[SeqStep]) -> String {
    seq.iter()
        .map(|s| match s.action {
            SeqAction::Insmod => s.module.clone(),
            other => format!("{}({other})", s.module),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn opts_line(opts: &[EffectiveOption]) -> String {
    opts.iter()
        .map(|o| {
            let v = o
                .value
                .as_ref()
                .map_or(o.name.clone(), |v| format!("{}={v}", o.name));
            match o.source {
                OptionSource::Config => format!("{v} (modprobe.d)"),
                OptionSource::Given => v,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_target(out: &mut String, t: &modules::Target) {
    if !t.live {
        let _ = writeln!(
            out,
            "(module tree {}: not the running kernel; loaded state not consulted)",
            t.module_dir.display()
        );
    }
}

fn render_resolve(out: &mut String, r: &modules::ResolveReport, verbose: u8) {
    render_target(out, &r.target);
    for x in &r.results {
        if !x.found {
            let _ = writeln!(out, "{}: not found", x.name);
            if let Some(l) = &x.legacy {
                let _ = writeln!(out, "  note: {l}");
            }
            if !x.suggestions.is_empty() {
                let _ = writeln!(out, "  did you mean: {}", x.suggestions.join(", "));
            }
            continue;
        }
        for m in &x.modules {
            let via = if m.via_alias { " (alias)" } else { "" };
            let _ = writeln!(out, "{} -> {}{via}: {}", x.name, m.module, m.state);
            if let Some(l) = &x.legacy {
                let _ = writeln!(out, "  note: {l}");
            }
            let _ = writeln!(out, "  load sequence: {}", seq_line(&m.sequence));
            if !m.would_load {
                let _ = writeln!(
                    out,
                    "  would not load: {}",
                    m.reason.as_deref().unwrap_or("?")
                );
            }
            if m.blacklisted {
                let _ = writeln!(out, "  blacklisted in modprobe.d");
            }
            if let Some(c) = &m.install_command {
                let _ = writeln!(out, "  install command: {c}");
            }
            if let Some(c) = &m.remove_command {
                let _ = writeln!(out, "  remove command: {c}");
            }
            if !m.softdeps.pre.is_empty() || !m.softdeps.post.is_empty() {
                let _ = writeln!(
                    out,
                    "  softdeps: pre: {} post: {}",
                    m.softdeps.pre.join(" "),
                    m.softdeps.post.join(" ")
                );
            }
            if !m.options.is_empty() {
                let _ = writeln!(out, "  options: {}", opts_line(&m.options));
            }
            if verbose > 0 {
                for p in &m.parameters {
                    let _ = writeln!(
                        out,
                        "  parameter {} ({}): {}",
                        p.name,
                        p.r#type.as_deref().unwrap_or("?"),
                        p.description.as_deref().unwrap_or("")
                    );
                }
            } else if !m.parameters.is_empty() {
                let names: Vec<_> = m.parameters.iter().map(|p| p.name.as_str()).collect();
                let _ = writeln!(out, "  parameters: {}", names.join(", "));
            }
        }
    }
}

fn render_load(out: &mut String, r: &modules::LoadReport) {
    render_target(out, &r.target);
    for x in &r.results {
        if x.error.is_some() {
            let _ = writeln!(out, "{}: failed", x.name);
        }
        for m in &x.modules {
            let what = match m.outcome {
                LoadOutcome::Loaded => format!("loaded ({})", seq_line(&m.sequence)),
                LoadOutcome::WouldLoad if m.sequence.is_empty() => "nothing to insert".to_owned(),
                LoadOutcome::WouldLoad => format!("would insert {}", seq_line(&m.sequence)),
                LoadOutcome::AlreadyLoaded => "already loaded".to_owned(),
                LoadOutcome::Builtin => "built into the kernel".to_owned(),
                LoadOutcome::Failed => "failed".to_owned(),
            };
            let alias = if m.module == x.name {
                String::new()
            } else {
                format!(" -> {}", m.module)
            };
            let _ = writeln!(out, "{}{alias}: {what}", x.name);
            if !m.options.is_empty() && m.outcome != LoadOutcome::Failed {
                let _ = writeln!(out, "  options: {}", opts_line(&m.options));
            }
            for n in &m.notes {
                let _ = writeln!(out, "  note: {n}");
            }
        }
        if let Some(l) = &x.legacy {
            let _ = writeln!(out, "  note: {l}");
        }
    }
}

fn render_unload(out: &mut String, r: &modules::UnloadReport) {
    if !r.target.live {
        let state = if r.target.root == std::path::Path::new("/") {
            "planned as if none of its modules were loaded".to_string()
        } else {
            format!(
                "loaded state from {} (none when absent)",
                r.target.root.join("proc/modules").display()
            )
        };
        let _ = writeln!(
            out,
            "(module tree {}: not the running kernel; {state})",
            r.target.module_dir.display()
        );
    }
    for x in &r.results {
        if x.error.is_some() {
            let _ = writeln!(out, "{}: failed", x.name);
        }
        for m in &x.modules {
            let _ = writeln!(
                out,
                "{}: {}",
                m.module,
                m.outcome.as_str().replace('_', " ")
            );
            for s in &m.steps {
                let why = match &s.role {
                    Role::Target => String::new(),
                    Role::Softdep { of } => format!(" (softdep of {of})"),
                    Role::UnusedDependency { of } => format!(" (unused after {of})"),
                };
                let res = match &s.result {
                    StepResult::Removed if r.dry_run => "would remove".to_owned(),
                    StepResult::Removed => "removed".to_owned(),
                    StepResult::Kept { reason } => format!("kept: {reason}"),
                    StepResult::Failed { errno } => format!("failed: {errno}"),
                };
                let _ = writeln!(out, "  {res} {}{why}", s.module);
            }
        }
    }
}

/// `--persist` edits for loaded names: keyed by the name as given (nfkit.toml
/// keeps what the user asked for; apply resolves aliases when loading).
/// Built through the types nfkit.toml holds, before anything is loaded: a
/// name or value the boot files cannot carry stops the command first.
fn persist_edits(
    requests: &[modules::LoadRequest],
) -> Result<Vec<crate::persist::edit::Edit>, crate::persist::values::ValueError> {
    use crate::persist::values::{self, OptionName, OptionValue};
    requests
        .iter()
        .map(|r| {
            Ok(crate::persist::edit::Edit::LoadModule {
                module: values::module_name(&r.name)?,
                options: r
                    .options
                    .iter()
                    .map(|o| {
                        Ok((
                            OptionName::parse(&o.name)?,
                            OptionValue::parse(o.value.as_deref().unwrap_or("1"))?,
                        ))
                    })
                    .collect::<Result<_, values::ValueError>>()?,
            })
        })
        .collect()
}

/// Under `-v` (text mode), everything libkmod logged during the command, on
/// stderr: `libkmod: <priority>: <function>: <message>`.
fn report_libkmod_log(output: Output, lines: &[String]) {
    if output.json || output.verbose == 0 {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    for line in lines {
        let _ = writeln!(stderr, "libkmod: {line}");
    }
}

/// A name's own error followed by its modules' errors.
fn errors_of<'a, M>(
    own: &'a Option<ErrorInfo>,
    modules: &'a [M],
    error: impl Fn(&'a M) -> &'a Option<ErrorInfo> + 'a,
) -> impl Iterator<Item = &'a ErrorInfo> + 'a {
    own.iter()
        .chain(modules.iter().filter_map(move |m| error(m).as_ref()))
}
