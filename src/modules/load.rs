//! `nfkit modules load`: modprobe's insert through libkmod, with the
//! options checked against the module's real parameters, install commands
//! never run, a failed name rolled back, and independent modules inserted
//! in parallel.
//!
//! A load runs in four phases:
//! 1. **Resolve** (this thread, one libkmod context): each name is looked
//!    up, and each module it resolves to goes through the checks of
//!    [`LoadJob`] up to a dry-run probe, whose print_action list is the
//!    module's *load sequence* (softdeps, dependencies, the module, with
//!    the options libkmod would pass: modprobe.d + given). Blacklist,
//!    install-command policy and option checks happen here, before
//!    anything is inserted. A dry run ends here (unchanged by the rest).
//! 2. **Plan** ([`super::schedule`], pure): the sequences of all names
//!    become one DAG (hard dependencies and pre-softdeps before a module,
//!    post-softdeps after), each module once, in the sequential order.
//! 3. **Insert** ([`super::pool`]): up to `--jobs` worker threads insert
//!    the modules whose prerequisites are in. libkmod contexts are not
//!    thread-safe, so each worker opens its *own* context (no
//!    configuration, no indexes: [`KmodInserter`]) and inserts by path
//!    (`kmod_module_new_from_path` + `kmod_module_insert_module`), with
//!    the options the resolving context computed; libkmod still handles
//!    `.ko.xz`/`.ko.zst` (kernel decompression through `finit_module`, or
//!    its own). A failed module's dependents are not attempted. With
//!    `--jobs 1` the insert order is the sequential loader's order.
//! 4. **Conclude** (this thread): per name, in the order given: the
//!    result, the parameter check after loading, and the rollback of what
//!    this run inserted for a name that failed (a module another,
//!    successful name needs is kept).
use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::Path;

use nix::errno::Errno;
use serde::Serialize;

use super::error::{CommandKind, ErrorInfo, ModuleError, Op};
use super::name::{self, ModuleName};
use super::options::{self, EffectiveOption, ModOption};
use super::pool::{self, Inserter, NodeOutcome, PoolRun};
use super::resolve::params_from_modinfo;
use super::schedule::{Graph, Relations};
use super::target::{KmodLog, Target, lookup, sysfs_builtin};
use super::{legacy, removal, sysfs};
use crate::kmod::{self, Context, InitState, LogLine, Module, ProbeAction, probe_flags};
use crate::system::Host;

mod conclude;
mod insert;
mod job;

use conclude::{Inserted, failed_module};
use insert::{InsertDone, KmodInserter};
#[cfg(test)]
use job::unknown_params;
use job::{Failure, InKernel, LoadJob, Pending, Prepared, prepare};

/// How libkmod handles one module of a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeqAction {
    /// Inserted from its `.ko` file.
    Insmod,
    /// Handled by its modprobe.d install command (never run by nfkit).
    Install,
    /// Built into the kernel: nothing to insert.
    Builtin,
}

impl SeqAction {
    /// The name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            SeqAction::Insmod => "insmod",
            SeqAction::Install => "install",
            SeqAction::Builtin => "builtin",
        }
    }
}

impl fmt::Display for SeqAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The outcome for one module of a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadOutcome {
    /// Inserted (with what it needed).
    Loaded,
    /// Dry run: would be inserted (or has nothing to insert).
    WouldLoad,
    /// Already in the running kernel.
    AlreadyLoaded,
    /// Built into the kernel.
    Builtin,
    /// Not loaded: see the error.
    Failed,
}

impl LoadOutcome {
    /// The name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadOutcome::Loaded => "loaded",
            LoadOutcome::WouldLoad => "would_load",
            LoadOutcome::AlreadyLoaded => "already_loaded",
            LoadOutcome::Builtin => "builtin",
            LoadOutcome::Failed => "failed",
        }
    }
}

impl fmt::Display for LoadOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One module libkmod would insert (or handle) for a load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeqStep {
    /// Module name.
    pub module: String,
    /// How it is handled.
    pub action: SeqAction,
    /// `.ko` file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Options passed (modprobe.d + given, for the target).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub options: String,
    /// The install command, for `install`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_command: Option<String>,
}

pub(crate) fn seq(actions: &[ProbeAction]) -> Vec<SeqStep> {
    actions
        .iter()
        .filter(|a| a.install || a.path.is_some() || a.builtin)
        .map(|a| SeqStep {
            module: a.module.clone(),
            action: if a.install {
                SeqAction::Install
            } else if a.builtin {
                SeqAction::Builtin
            } else {
                SeqAction::Insmod
            },
            path: a.path.clone(),
            options: a.options.clone(),
            install_command: a.install_command.clone(),
        })
        .collect()
}

/// One `NAME [OPTION=VALUE...]` from the load command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    /// Module name or alias.
    pub name: String,
    /// Options given for it.
    pub options: Vec<ModOption>,
}

/// Splits `NAME [OPT=VAL...] NAME ...`: a word with `=` is an option of the
/// name before it.
pub fn parse_load_args(args: &[String]) -> Result<Vec<LoadRequest>, ModuleError> {
    let mut out: Vec<LoadRequest> = Vec::new();
    for a in args {
        if a.contains('=') {
            let Some(last) = out.last_mut() else {
                return Err(ModuleError::InvalidName {
                    op: Op::Load,
                    name: a.clone(),
                    problem: name::NameProblem::Assignment,
                });
            };
            let o = options::parse_given(a).map_err(|problem| ModuleError::InvalidOption {
                op: Op::Load,
                module: last.name.clone(),
                option: a.clone(),
                problem,
            })?;
            last.options.push(o);
        } else {
            out.push(LoadRequest {
                name: a.clone(),
                options: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// How many modules a load inserts at once (`--jobs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Jobs(Option<NonZeroUsize>);

impl Jobs {
    /// The default's cap: more workers than this buy nothing for the few
    /// dozen modules of a netfilter set (the longest dependency chain
    /// bounds the gain).
    pub const DEFAULT_CAP: usize = 4;
    /// The largest `--jobs` accepted.
    pub const MAX: usize = 64;

    /// Exactly `n` workers (`--jobs N`).
    pub fn exactly(n: NonZeroUsize) -> Jobs {
        Jobs(Some(n))
    }

    /// The default: online CPUs, at most [`Self::DEFAULT_CAP`].
    pub fn auto() -> Jobs {
        Jobs(None)
    }

    /// The number of workers this stands for.
    pub fn count(self) -> usize {
        match self.0 {
            Some(n) => n.get(),
            None => default_jobs(online_cpus()),
        }
    }
}

/// The default worker count for `cpus` online CPUs.
fn default_jobs(cpus: Option<usize>) -> usize {
    cpus.unwrap_or(1).clamp(1, Jobs::DEFAULT_CAP)
}

/// `sysconf(_SC_NPROCESSORS_ONLN)` (glibc reads
/// /sys/devices/system/cpu/online).
fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf has no preconditions; it returns -1 on error.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// Flags of `nfkit modules load`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadFlags {
    /// Report what would be done; insert nothing.
    pub dry_run: bool,
    /// Apply the blacklist to names too (`modprobe -b`).
    pub apply_blacklist: bool,
    /// Ignore the target's install command and softdeps (`modprobe -i`).
    pub ignore_install: bool,
    /// Modules inserted at once.
    pub jobs: Jobs,
}

/// The outcome for one module of a load.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedModule {
    /// Real module name.
    pub module: String,
    /// What happened.
    pub outcome: LoadOutcome,
    /// Modules inserted (or that would be), in order.
    pub sequence: Vec<SeqStep>,
    /// Effective options of the module.
    pub options: Vec<EffectiveOption>,
    /// Remarks (options not applied, policy-disabled dependencies…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The error, for `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// The outcome for one name of a load.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// The name as given.
    pub name: String,
    /// Options as given.
    pub options: Vec<ModOption>,
    /// True when every module of the name is in the kernel (or would be).
    pub ok: bool,
    /// Per module.
    pub modules: Vec<LoadedModule>,
    /// Legacy-name note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy: Option<String>,
    /// The error, when the name itself failed (invalid, not found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// `nfkit modules load` result.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The module tree used.
    pub target: Target,
    /// Dry run?
    pub dry_run: bool,
    /// Worker threads that inserted modules (0: nothing was inserted).
    pub jobs: usize,
    /// One entry per name, in order.
    pub results: Vec<LoadResult>,
    /// Everything libkmod logged (shown under `-v`; failures carry their
    /// own lines in their error).
    #[serde(skip)]
    pub libkmod_log: Vec<String>,
}

impl LoadReport {
    /// True when every name succeeded.
    pub fn ok(&self) -> bool {
        self.results.iter().all(|r| r.ok)
    }
}

/// Maps a failed insert to the error the user sees.
fn insert_error(
    t: &Target,
    ctx: &Context,
    failed: &str,
    errno: Errno,
    opts: &str,
    e: kmod::Error,
) -> ModuleError {
    let op = Op::Load;
    let module = failed.to_owned();
    match errno {
        Errno::EPERM => ModuleError::NotPermitted {
            reason: sysfs::eperm_reason(&t.proc_root, &t.sys_root, &module),
            op,
            module,
        },
        Errno::ENOEXEC => ModuleError::WrongKernel {
            vermagic: ctx
                .module(failed)
                .and_then(|m| m.info())
                .ok()
                .and_then(|i| i.into_iter().find(|(k, _)| k == "vermagic").map(|(_, v)| v)),
            running: t.running_release.clone(),
            op,
            module,
        },
        Errno::EINVAL => ModuleError::InvalidArgument {
            op,
            module,
            options: opts.to_owned(),
        },
        Errno::ENOENT => ModuleError::UnknownSymbol { op, module },
        Errno::EBUSY | Errno::EAGAIN => ModuleError::InUse {
            op,
            module,
            refcnt: 0,
            holders: Vec::new(),
        },
        Errno::ENOKEY | Errno::EKEYREJECTED | Errno::EBADMSG => {
            ModuleError::Signature { op, module, errno }
        }
        Errno::ENOSYS => ModuleError::NoModuleSupport {
            op,
            module,
            detail: "init_module: ENOSYS".into(),
        },
        _ => ModuleError::Kmod {
            op,
            module,
            source: e,
        },
    }
}

/// `nfkit modules load`. Continues past a failed name; see
/// [`LoadReport::ok`]. The phases are in the module documentation.
pub fn load(
    host: &Host,
    release: Option<&str>,
    requests: &[LoadRequest],
    flags: LoadFlags,
) -> Result<LoadReport, ModuleError> {
    let op = Op::Load;
    let t = Target::new(host, release, op)?;
    let ctx = t.context(op)?;
    let mut log = KmodLog::default();
    log.take(&ctx);
    // Phase 1a: every name looked up.
    let looked: Vec<Result<Vec<Module<'_>>, Box<ErrorInfo>>> = requests
        .iter()
        .map(|req| {
            let found = lookup(&ctx, &t, op, &req.name);
            let lines = log.take(&ctx);
            found.map_err(|e| Box::new(ErrorInfo::from(&e).with_libkmod(lines)))
        })
        .collect();
    // Phase 1b: each module's checks and load sequence.
    let mut names: Vec<Vec<Prepared<'_, '_>>> = Vec::new();
    for (req, mods) in requests.iter().zip(&looked) {
        let mut units = Vec::new();
        for m in mods.iter().flatten() {
            let prepared = prepare(&t, &ctx, m, req, flags);
            let lines = log.take(&ctx);
            units.push(prepared.unwrap_or_else(|f| Prepared::Finished(failed_module(*f, lines))));
        }
        names.push(units);
    }
    // Phases 2 and 3: one DAG over every sequence, inserted by the pool.
    let pending: Vec<&Pending<'_, '_>> = names
        .iter()
        .flatten()
        .filter_map(|p| match p {
            Prepared::Insert(p) => Some(p),
            Prepared::Finished(_) => None,
        })
        .collect();
    let sequences: Vec<Vec<(String, String)>> = pending
        .iter()
        .map(|p| {
            p.sequence
                .iter()
                .map(|s| (s.module.clone(), s.options.clone()))
                .collect()
        })
        .collect();
    let graph = Graph::build(&sequences, |name| relations(&ctx, name));
    let steps: Vec<SeqStep> = (0..graph.len())
        .map(|i| {
            let unit = pending[graph.owner(i)];
            let (name, opts) = (graph.name(i), graph.options(i));
            unit.sequence
                .iter()
                .find(|s| s.module == name && s.options == opts)
                .cloned()
                .expect("a node comes from its owner's sequence")
        })
        .collect();
    let run = pool::run(&graph, &steps, flags.jobs.count(), || {
        KmodInserter::new(&t.module_dir)
    });
    for o in &run.outcomes {
        if let NodeOutcome::Done(d) | NodeOutcome::Failed(d) = o {
            log.extend(&d.lines);
        }
    }
    // Phase 4: per name, in order.
    let facts = Inserted {
        graph: &graph,
        steps: &steps,
        run: &run,
        ctx: &ctx,
    };
    let mut results = Vec::new();
    let mut unit = 0;
    let mut concluded: Vec<Vec<(LoadedModule, Option<usize>)>> = Vec::new();
    for units in names {
        let mut modules = Vec::new();
        for p in units {
            modules.push(match p {
                Prepared::Finished(m) => (m, None),
                Prepared::Insert(p) => {
                    let u = unit;
                    unit += 1;
                    (facts.conclude(p, u), Some(u))
                }
            });
        }
        concluded.push(modules);
    }
    let failed_names: Vec<bool> = concluded
        .iter()
        .zip(&looked)
        .map(|(ms, l)| l.is_err() || ms.iter().any(|(m, _)| m.outcome == LoadOutcome::Failed))
        .collect();
    let notes = facts.roll_back(&concluded, &failed_names);
    for (((req, l), mut modules), mut notes) in
        requests.iter().zip(looked).zip(concluded).zip(notes)
    {
        let legacy = legacy::lookup(&req.name);
        let (modules, error, legacy) = match l {
            Err(error) => (Vec::new(), Some(*error), legacy.map(|l| l.note(&[]))),
            Ok(mods) => {
                let names: Vec<String> = mods.iter().map(Module::name).collect();
                if !notes.is_empty() {
                    let at = modules
                        .iter()
                        .position(|(m, _)| m.outcome == LoadOutcome::Failed)
                        .unwrap_or(0);
                    if let Some((m, _)) = modules.get_mut(at) {
                        m.notes.append(&mut notes);
                    }
                }
                (
                    modules.into_iter().map(|(m, _)| m).collect(),
                    None,
                    legacy.map(|l| l.note(&names)),
                )
            }
        };
        let modules: Vec<LoadedModule> = modules;
        results.push(LoadResult {
            name: req.name.clone(),
            options: req.options.clone(),
            ok: error.is_none() && modules.iter().all(|m| m.outcome != LoadOutcome::Failed),
            modules,
            legacy,
            error,
        });
    }
    Ok(LoadReport {
        libkmod_log: log.finish(&ctx),
        jobs: run.threads,
        target: t,
        dry_run: flags.dry_run,
        results,
    })
}

/// Inserts the `.ko` files `paths` (independent of each other) with the
/// real inserter on `jobs` worker threads: the worker path of a load
/// without a kernel that can load modules (`nfkit __confinement-test
/// load-threads`: threads and per-worker libkmod contexts under the
/// seccomp filter and the Landlock ruleset). Returns the threads used and
/// each file's result.
pub(crate) fn insert_files(
    module_dir: &Path,
    paths: &[String],
    jobs: Jobs,
) -> (usize, Vec<Result<bool, kmod::Error>>) {
    let sequences: Vec<Vec<(String, String)>> = paths
        .iter()
        .map(|p| vec![(p.clone(), String::new())])
        .collect();
    let graph = Graph::build(&sequences, |_| Relations::default());
    let steps: Vec<SeqStep> = (0..graph.len())
        .map(|i| SeqStep {
            module: graph.name(i).to_owned(),
            action: SeqAction::Insmod,
            path: Some(graph.name(i).to_owned()),
            options: String::new(),
            install_command: None,
        })
        .collect();
    let run = pool::run(&graph, &steps, jobs.count(), || {
        KmodInserter::new(module_dir)
    });
    let results = paths
        .iter()
        .map(|p| match graph.node(p).map(|i| &run.outcomes[i]) {
            Some(NodeOutcome::Done(d)) => Ok(d.already),
            Some(NodeOutcome::Failed(d)) => Err(d.error.clone().expect("a failure has an error")),
            _ => unreachable!("independent files are never blocked"),
        })
        .collect();
    (run.threads, results)
}

/// A module's relations for the DAG, from the resolving context.
fn relations(ctx: &Context, name: &str) -> Relations {
    let Ok(m) = ctx.module(name) else {
        return Relations::default();
    };
    let (pre, post) = m
        .softdeps()
        .map(|(pre, post)| (pre.names(), post.names()))
        .unwrap_or_default();
    Relations {
        deps: m.dependencies().names(),
        pre,
        post,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_args_attach_options_to_the_name_before() {
        let args: Vec<String> = [
            "nf_conntrack",
            "hashsize=65536",
            "acct=1",
            "xt_state",
            "ipt_REJECT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = parse_load_args(&args).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].name, "nf_conntrack");
        assert_eq!(r[0].options.len(), 2);
        assert_eq!(r[1].options.len(), 0);
        let err = parse_load_args(&["hashsize=1".to_string()]).unwrap_err();
        assert_eq!(err.kind(), "invalid_name");
        let err = parse_load_args(&["x".to_string(), "a b=1".to_string()]).unwrap_err();
        assert_eq!(err.kind(), "invalid_option");
    }

    #[test]
    fn unknown_params_fold_dashes() {
        assert_eq!(
            unknown_params(
                &[options::parse_given("hash-size=1").unwrap()],
                &["hash_size".into()]
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            unknown_params(
                &[options::parse_given("ip_conntrack_disable_ve0=0").unwrap()],
                &["hashsize".into()]
            ),
            vec!["ip_conntrack_disable_ve0"]
        );
    }

    #[test]
    fn outcome_and_action_names_are_the_json_strings() {
        for o in [
            LoadOutcome::Loaded,
            LoadOutcome::WouldLoad,
            LoadOutcome::AlreadyLoaded,
            LoadOutcome::Builtin,
            LoadOutcome::Failed,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for a in [SeqAction::Insmod, SeqAction::Install, SeqAction::Builtin] {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        for (o, name) in [
            (crate::modules::UnloadOutcome::Removed, "removed"),
            (crate::modules::UnloadOutcome::WouldRemove, "would_remove"),
            (crate::modules::UnloadOutcome::NotLoaded, "not_loaded"),
            (crate::modules::UnloadOutcome::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), name);
            assert_eq!(o.as_str(), name);
        }
        assert_eq!(LoadOutcome::WouldLoad.as_str(), "would_load");
        let e = ModuleError::DisabledByPolicy {
            op: Op::Load,
            module: "xt_x".into(),
            kind: CommandKind::Install,
            command: "/bin/true".into(),
        };
        assert_eq!(
            e.to_string(),
            "load xt_x: disabled by policy (modprobe.d: `install xt_x /bin/true`)"
        );
    }
}
