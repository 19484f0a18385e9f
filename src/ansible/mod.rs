//! nfkit as Ansible modules (the collection `nfkit.netfilter`).
//!
//! Ansible runs a binary module as `PROGRAM ARGS.json`, where PROGRAM is its
//! copy of the module file (`AnsiballZ_NAME`). The collection ships this one
//! binary as each `plugins/modules/NAME`; [`invoked_as`] tells the module
//! from the program's file name. The module prints exactly one JSON object
//! on stdout. Argument checking ([`args`]) and result building ([`result`])
//! are pure; this file does the I/O through the library.

pub mod args;
pub mod result;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use self::args::{DesiredFrom, KmodState, Mode, ModuleKind, Persistent, Task};
use self::result::TaskResult;
use crate::cli::Output;
use crate::error::ErrorObject;
use crate::persist::apply::{self, FileReport};
use crate::persist::desired::{self, Desired};
use crate::persist::edit::Edit;
use crate::persist::import_scope::Scope;
use crate::persist::runtime::{self, OptionsFrom};
use crate::persist::{diff, files, import, record, verify};
use crate::system::Host;

/// The module this program runs as, from its file name (`argv[0]`).
pub fn invoked_as() -> Option<ModuleKind> {
    let program = std::env::args_os().next()?;
    let name = Path::new(&program).file_name()?.to_str()?.to_string();
    ModuleKind::from_program(&name)
}

/// Runs module `kind` with the process's arguments; prints its one JSON
/// object. Returns the exit code (Ansible reads the JSON; 1 when failed).
pub fn main(kind: ModuleKind) -> u8 {
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    let result = match argv.as_slice() {
        [path] => run_file(kind, Path::new(path)),
        _ => TaskResult::error(
            ErrorObject::text(format!(
                "{}: expected one argument, the task's arguments file (Ansible runs a binary module as `MODULE ARGS.json`); got {}",
                kind.name(),
                argv.len()
            ))
            .with_hint("run this module from Ansible (nfkit.netfilter collection), or call `nfkit` by its own name"),
        ),
    };
    let out = Output {
        json: true,
        quiet: false,
        verbose: 0,
    };
    if out.emit(&result.to_json(), |_| {}).is_err() {
        return crate::cli::EXIT_ERROR;
    }
    if result.failed {
        crate::cli::EXIT_ERROR
    } else {
        crate::cli::EXIT_OK
    }
}

fn run_file(kind: ModuleKind, path: &Path) -> TaskResult {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(dir) => dir.join(path),
            Err(e) => {
                return TaskResult::error(ErrorObject::context(
                    "read the task arguments: current directory",
                    &e,
                ));
            }
        }
    };
    let text = match crate::read::read_text(Path::new("/"), &path, crate::read::Kind::Config) {
        Ok(Some(text)) => text,
        Ok(None) => {
            return TaskResult::error(ErrorObject::text(format!(
                "read the task arguments {}: no such file",
                path.display()
            )));
        }
        Err(e) => {
            return TaskResult::error(ErrorObject::context("read the task arguments", &e));
        }
    };
    let mode = args::mode_of(&text);
    let (task, mode) = match args::parse_text(kind, &text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let mut r = TaskResult::error(ErrorObject::of(&e));
            r.fields.insert("check_mode".into(), json!(mode.check));
            return r;
        }
    };
    match run(task, mode) {
        Ok(r) => r,
        Err(e) => TaskResult::error(ErrorObject::of_anyhow(&e)),
    }
}

fn host_for(root: &Option<PathBuf>) -> anyhow::Result<Host> {
    Ok(match root {
        Some(dir) => Host::offline_checked(dir)?,
        None => Host::live(),
    })
}

/// The desired state of an apply/verify task.
fn load(host: &Host, from: &DesiredFrom) -> anyhow::Result<Desired> {
    match from {
        DesiredFrom::Inline(d) => Ok(d.clone()),
        DesiredFrom::File(config) => crate::cli::load_desired(host, config),
    }
}

fn run(task: Task, mode: Mode) -> anyhow::Result<TaskResult> {
    match task {
        Task::Apply {
            desired,
            root,
            write_config,
        } => {
            let host = host_for(&root)?;
            run_apply(&host, &desired, write_config, mode)
        }
        Task::Verify {
            desired,
            root,
            fail_on_drift,
        } => {
            let host = host_for(&root)?;
            let desired = load(&host, &desired)?;
            let report = verify::verify(&host, &desired)?;
            Ok(result::verify(&report, fail_on_drift))
        }
        Task::Facts { root } => run_facts(&host_for(&root)?),
        Task::Import {
            root,
            from,
            all,
            paths,
        } => {
            let host = host_for(&root)?;
            let scope = if all { Scope::All } else { Scope::Netfilter };
            let imported = import::import(&host.root, from, scope, &paths)?;
            let mut r = TaskResult {
                msg: format!(
                    "imported from {} file{}",
                    imported.sources.len(),
                    if imported.sources.len() == 1 { "" } else { "s" }
                ),
                ..TaskResult::default()
            };
            r.fields.insert("toml".into(), json!(imported.render()));
            r.fields
                .insert("desired".into(), serde_json::to_value(&imported.desired)?);
            r.fields.insert("sources".into(), json!(imported.sources));
            r.fields.insert("summary".into(), json!(imported.summary()));
            Ok(r)
        }
        Task::Kmod {
            name,
            state,
            params,
            persistent,
            root,
        } => run_kmod(&host_for(&root)?, name, state, params, persistent, mode),
    }
}

/// nfkit.toml as `write_config` would leave it: its report (with diff).
fn config_report(host: &Host, desired: &Desired) -> anyhow::Result<(FileReport, String)> {
    let file = record::config_file(host, None);
    let before = files::read_toml_under(&file.root, &file.path)?;
    let after = format!(
        "{}{}",
        crate::persist::edit::NEW_FILE_HEADER,
        desired.render(&[])
    );
    let changed = before.as_deref() != Some(after.as_str());
    let report = FileReport {
        target: "nfkit.toml",
        path: file.path.clone(),
        action: match (&before, changed) {
            (_, false) => "unchanged",
            (None, true) => "create",
            (Some(_), true) => "update",
        },
        diff: if changed {
            diff::unified(
                &file.path.display().to_string(),
                before.as_deref(),
                Some(&after),
            )
        } else {
            String::new()
        },
    };
    Ok((report, after))
}

fn run_apply(
    host: &Host,
    from: &DesiredFrom,
    write_config: bool,
    mode: Mode,
) -> anyhow::Result<TaskResult> {
    if write_config && !matches!(from, DesiredFrom::Inline(_)) {
        anyhow::bail!(
            "apply: write_config writes the inline desired state as nfkit.toml; this task reads it from a file"
        );
    }
    if mode.check {
        let desired = load(host, from)?;
        let config = if write_config {
            Some(config_report(host, &desired)?.0)
        } else {
            None
        };
        let report = apply::check(host, &desired)?;
        return Ok(result::apply(&report, config.as_ref(), mode));
    }
    let lock = files::lock_runs()?;
    let desired = load(host, from)?;
    let report = apply::apply_locked(host, &desired, &lock, crate::modules::Jobs::auto())?;
    let config = if write_config {
        let file = record::config_file(host, None);
        let (report, text) = config_report(host, &desired)?;
        if report.action != "unchanged" {
            if let Some(parent) = file.path.parent() {
                lock.create_dir_all(&file.root, parent)?;
            }
            lock.write_atomic(&file.root, &file.path, text.as_bytes())?;
        }
        Some(report)
    } else {
        None
    };
    Ok(result::apply(&report, config.as_ref(), mode))
}

/// `ansible_facts.nfkit`.
#[derive(Serialize)]
struct Facts {
    kernel_release: Option<String>,
    module_support: bool,
    network_namespace: crate::system::NetnsInfo,
    conntrack: crate::conntrack::ConntrackStatus,
    tables: crate::tables::TablesReport,
    modules: Option<crate::modules::ListReport>,
    modules_error: Option<ErrorObject>,
}

fn run_facts(host: &Host) -> anyhow::Result<TaskResult> {
    let (modules, modules_error) = match crate::modules::list(host, false) {
        Ok(list) => (Some(list), None),
        Err(e) => (None, Some(ErrorObject::of(&e))),
    };
    let mut socket = crate::netlink::SharedSocket::default();
    let facts = Facts {
        kernel_release: host.kernel_release()?,
        module_support: host.has_module_support(),
        network_namespace: host.network_namespace(),
        conntrack: crate::conntrack::read_status(host, Default::default(), &mut socket),
        tables: crate::tables::read_tables(host, &mut socket),
        modules,
        modules_error,
    };
    let mut r = TaskResult {
        msg: "nfkit facts gathered".into(),
        ..TaskResult::default()
    };
    r.fields.insert(
        "ansible_facts".into(),
        json!({ "nfkit": serde_json::to_value(&facts)? }),
    );
    Ok(r)
}

fn run_kmod(
    host: &Host,
    name: desired::ModuleName,
    state: KmodState,
    params: Vec<(desired::OptionName, desired::OptionValue)>,
    persistent: Persistent,
    mode: Mode,
) -> anyhow::Result<TaskResult> {
    if state == KmodState::Absent && !params.is_empty() {
        anyhow::bail!("kmod: params are for state=present; {name} is to be unloaded");
    }
    let edit = match (state, persistent) {
        (_, Persistent::Disabled) => None,
        (KmodState::Present, Persistent::Present) => Some(Edit::LoadModule {
            module: name.clone(),
            options: params.clone(),
        }),
        (_, Persistent::Absent) => Some(Edit::DropModule(name.clone())),
        (KmodState::Absent, Persistent::Present) => anyhow::bail!(
            "kmod: state=absent with persistent=present would load {name} at every boot but unload it now; choose one"
        ),
    };
    if host.offline && edit.is_none() {
        anyhow::bail!(
            "kmod: persistent=disabled changes only the running kernel, which root (an offline image) does not use"
        );
    }
    let mut out = TaskResult::default();
    let mut changed = false;
    // The running kernel (live only).
    if !host.offline {
        match state {
            KmodState::Present if edit.is_none() => {
                let desired = Desired {
                    modules: desired::ModulesSection {
                        load: vec![name.clone()],
                        options: [(name.clone(), params.iter().cloned().collect())]
                            .into_iter()
                            .filter(|(_, o): &(_, std::collections::BTreeMap<_, _>)| !o.is_empty())
                            .collect(),
                    },
                    ..Desired::default()
                };
                let (changes, failures, remaining) = if mode.check {
                    let running = runtime::read_running(host, &desired);
                    (runtime::diff_running(&desired, &running), vec![], vec![])
                } else {
                    let converged = runtime::converge(
                        host,
                        &desired,
                        OptionsFrom::Desired,
                        crate::modules::Jobs::auto(),
                    );
                    let failures = converged.failures();
                    let remaining = runtime::remaining(host, &desired, &failures);
                    (converged.changed(), failures, remaining)
                };
                let report = apply::ApplyReport {
                    check: mode.check,
                    layout: crate::persist::plan::detect(&host.root),
                    targets: vec![],
                    files: vec![],
                    runtime: changes,
                    failures,
                    remaining,
                    notes: vec![],
                };
                return Ok(result::apply(&report, None, mode));
            }
            KmodState::Absent => {
                let report = crate::modules::unload(
                    host,
                    None,
                    &[name.to_string()],
                    crate::modules::UnloadFlags {
                        dry_run: mode.check,
                        ignore_install: false,
                    },
                )?;
                let removed: Vec<String> = report
                    .results
                    .iter()
                    .flat_map(|r| &r.modules)
                    .filter(|m| {
                        matches!(
                            m.outcome,
                            crate::modules::UnloadOutcome::Removed
                                | crate::modules::UnloadOutcome::WouldRemove
                        )
                    })
                    .map(|m| m.module.clone())
                    .collect();
                if let Some(err) = report.results.iter().find_map(|r| {
                    r.error
                        .clone()
                        .or_else(|| r.modules.iter().find_map(|m| m.error.clone()))
                }) {
                    let mut r = TaskResult::error(err.error);
                    r.fields
                        .insert("unload".into(), serde_json::to_value(&report)?);
                    return Ok(r);
                }
                changed |= !removed.is_empty();
                if mode.diff && !removed.is_empty() {
                    out.diff.push(json!({
                        "before_header": "running kernel (before)",
                        "after_header": "running kernel (after)",
                        "before": removed.iter().map(|m| format!("module {m} = loaded\n")).collect::<String>(),
                        "after": removed.iter().map(|m| format!("module {m} = not loaded\n")).collect::<String>(),
                    }));
                }
                out.fields
                    .insert("unload".into(), serde_json::to_value(&report)?);
            }
            KmodState::Present => {}
        }
    }
    if let Some(edit) = edit {
        // nfkit.toml edited and applied as a whole (the runtime part of a
        // present module is converged by that apply).
        let file = record::config_file(host, None);
        let rec = if mode.check {
            record::dry_run(host, &file, &[edit])?
        } else {
            record::record(host, &file, &[edit])?
        };
        let config = FileReport {
            target: "nfkit.toml",
            path: file.path.clone(),
            action: rec.config_action,
            diff: rec.config_diff.clone(),
        };
        let mut r = result::apply(&rec.apply, Some(&config), mode);
        r.changed |= changed;
        let mut diff = std::mem::take(&mut out.diff);
        diff.append(&mut r.diff);
        r.diff = diff;
        r.fields.extend(out.fields);
        return Ok(r);
    }
    out.changed = changed;
    out.msg = if changed {
        format!(
            "{} {name}",
            if mode.check {
                "would unload"
            } else {
                "unloaded"
            }
        )
    } else {
        format!("{name} is not loaded")
    };
    Ok(out)
}
