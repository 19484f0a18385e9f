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

/// What a worker reports for one module.
#[derive(Debug)]
struct InsertDone {
    /// The error, for a failed insert.
    error: Option<kmod::Error>,
    /// True when the kernel already had it (`EEXIST`: loaded by someone
    /// else meanwhile): not this run's to roll back.
    already: bool,
    /// What the worker's context logged for it.
    lines: Vec<LogLine>,
}

/// The real inserter: one per worker thread, with its own libkmod context
/// (made on that thread, on first use). The context reads no modprobe.d
/// configuration: path and options come from the resolving context's
/// plan, so both contexts agree by construction.
struct KmodInserter<'a> {
    module_dir: &'a Path,
    ctx: Option<Result<Context, kmod::Error>>,
}

impl<'a> KmodInserter<'a> {
    fn new(module_dir: &'a Path) -> Self {
        KmodInserter {
            module_dir,
            ctx: None,
        }
    }
}

impl Inserter for KmodInserter<'_> {
    type Step = SeqStep;
    type Done = InsertDone;

    fn insert(&mut self, step: &SeqStep) -> Result<InsertDone, InsertDone> {
        let done = |error: Option<kmod::Error>, already, lines| {
            let d = InsertDone {
                error,
                already,
                lines,
            };
            if d.error.is_some() { Err(d) } else { Ok(d) }
        };
        let call_error = |call, arg: &str, errno| kmod::Error::Call {
            call,
            arg: arg.to_owned(),
            errno,
        };
        match step.action {
            SeqAction::Builtin => done(None, true, Vec::new()),
            // Only the policy commands judge_commands accepted get here:
            // `true` succeeds without running anything, `false` fails as
            // the command would (libkmod's run_install callback did the same).
            SeqAction::Install => {
                let cmd = step.install_command.clone().unwrap_or_default();
                let failed = cmd.trim().ends_with("false");
                done(
                    failed.then(|| call_error("install", &cmd, Errno::EPERM)),
                    false,
                    Vec::new(),
                )
            }
            SeqAction::Insmod => {
                let Some(path) = &step.path else {
                    return done(
                        Some(call_error(
                            "kmod_module_insert_module",
                            &step.module,
                            Errno::ENOENT,
                        )),
                        false,
                        Vec::new(),
                    );
                };
                let dir = self.module_dir;
                // No configuration: an empty, NULL-terminated path list.
                let ctx = self
                    .ctx
                    .get_or_insert_with(|| Context::new(Some(dir), Some(&[])));
                let ctx = match ctx {
                    Ok(c) => c,
                    Err(e) => return done(Some(e.clone()), false, Vec::new()),
                };
                let result = ctx
                    .module_from_path(Path::new(path))
                    .and_then(|m| m.insert(&step.options));
                let lines = ctx.take_log();
                match result {
                    Ok(()) => done(None, false, lines),
                    Err(e) if e.errno() == Some(Errno::EEXIST) => done(None, true, lines),
                    Err(e) => done(Some(e), false, lines),
                }
            }
        }
    }
}

/// What phase 3 did, for concluding each name.
struct Inserted<'a, 'c> {
    graph: &'a Graph,
    steps: &'a [SeqStep],
    run: &'a PoolRun<InsertDone>,
    ctx: &'c Context,
}

impl Inserted<'_, '_> {
    /// The error of failed node `i` (ours and libkmod's lines).
    fn node_error(&self, t: &Target, i: usize, extra: &str) -> ErrorInfo {
        let (e, lines) = match &self.run.outcomes[i] {
            NodeOutcome::Failed(d) => (d.error.clone(), d.lines.clone()),
            _ => (None, Vec::new()),
        };
        let e = e.unwrap_or_else(|| kmod::Error::Call {
            call: "kmod_module_insert_module",
            arg: self.graph.name(i).to_owned(),
            errno: Errno::EINVAL,
        });
        let errno = e.errno().unwrap_or(Errno::EINVAL);
        let error = insert_error(t, self.ctx, self.graph.name(i), errno, extra, e);
        ErrorInfo::from(&error).with_libkmod(lines.into_iter().map(|l| l.message).collect())
    }

    /// Unit `u`'s result (a module of a name whose sequence was inserted).
    fn conclude(&self, p: Pending<'_, '_>, u: usize) -> LoadedModule {
        let Pending {
            mut job,
            sequence: _,
            effective,
        } = p;
        let t = job.t;
        let required: BTreeSet<String> = std::iter::once(job.module.clone())
            .chain(job.m.dependencies().names())
            .collect();
        let mut error = None;
        for &i in self.graph.unit(u) {
            let name = self.graph.name(i);
            let root = match self.run.outcomes[i] {
                NodeOutcome::Done(_) => continue,
                NodeOutcome::Failed(_) => i,
                NodeOutcome::Blocked { cause } => cause,
            };
            let cause = self.graph.name(root);
            if root != i && name == job.module {
                job.notes.push(format!(
                    "{name} not attempted: {cause}, which it needs, failed"
                ));
            }
            if required.contains(name) {
                if error.is_none() {
                    error = Some(self.node_error(t, root, &job.extra));
                }
            } else if root == i {
                job.notes.push(format!(
                    "softdep {name} not inserted: {} (ignored, as modprobe does)",
                    self.node_error(t, i, "").error.message
                ));
            }
        }
        let failed = |job: LoadJob<'_, '_>, error| LoadedModule {
            module: job.module,
            outcome: LoadOutcome::Failed,
            sequence: Vec::new(),
            options: Vec::new(),
            notes: job.notes,
            error: Some(error),
        };
        if let Some(e) = error {
            return failed(job, e);
        }
        let target = self.graph.node_in(u, &job.module);
        let inserted_by_run =
            |i: usize| matches!(&self.run.outcomes[i], NodeOutcome::Done(d) if !d.already);
        let inserted_here = target.is_none_or(|i| self.graph.owner(i) == u && inserted_by_run(i));
        // Inserted by this run as the very node of this name (an earlier
        // name with the same module and the same options owns it): the
        // options were applied, and sysfs shows it.
        let inserted_by_run = target.is_some_and(inserted_by_run);
        let (outcome, checked) = if inserted_here {
            (LoadOutcome::Loaded, job.check_options_applied())
        } else if inserted_by_run {
            (LoadOutcome::AlreadyLoaded, job.check_options_applied())
        } else {
            // An earlier name inserted it (with that name's options): as if
            // it had been loaded before this one, which it was.
            (
                LoadOutcome::AlreadyLoaded,
                job.check_given_options(Some(InKernel::Loaded)),
            )
        };
        if let Err(f) = checked {
            let error = ErrorInfo::from(&f.error);
            return failed(job, error);
        }
        let sequence = if inserted_here {
            self.graph
                .unit(u)
                .iter()
                .filter(|&&i| {
                    self.graph.owner(i) == u
                        && matches!(&self.run.outcomes[i], NodeOutcome::Done(d) if !d.already)
                })
                .map(|&i| self.steps[i].clone())
                .collect()
        } else {
            Vec::new()
        };
        LoadedModule {
            module: job.module,
            outcome,
            sequence,
            options: effective,
            notes: job.notes,
            error: None,
        }
    }

    /// Removes, dependents first, what this run inserted for the names that
    /// failed, so that a failed name leaves the kernel as it found it
    /// (modprobe leaves dependencies loaded). A module a successful name's
    /// sequence has is kept. Returns each name's notes.
    fn roll_back(
        &self,
        concluded: &[Vec<(LoadedModule, Option<usize>)>],
        failed: &[bool],
    ) -> Vec<Vec<String>> {
        let units_of = |n: usize| concluded[n].iter().filter_map(|(_, u)| *u);
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        let mut name_of_unit =
            vec![0; concluded.iter().flatten().filter(|x| x.1.is_some()).count()];
        for (n, &name_failed) in failed.iter().enumerate() {
            for u in units_of(n) {
                name_of_unit[u] = n;
                if !name_failed {
                    keep.extend(self.graph.unit(u).iter().map(|&i| self.graph.name(i)));
                }
            }
        }
        let ours = |i: usize| matches!(&self.run.outcomes[i], NodeOutcome::Done(d) if !d.already);
        let mut removed: Vec<Vec<String>> = vec![Vec::new(); concluded.len()];
        let mut notes: Vec<Vec<String>> = vec![Vec::new(); concluded.len()];
        // Newest first: a module's dependents started after it ended.
        for &i in self.run.started.iter().rev() {
            let n = name_of_unit[self.graph.owner(i)];
            if !failed[n] || !ours(i) {
                continue;
            }
            let name = self.graph.name(i);
            if keep.contains(name) {
                notes[n].push(format!("kept {name}: another name of this load needs it"));
                continue;
            }
            let result = self.ctx.module(name).and_then(|m| {
                if m.refcnt()? > 0 {
                    return Ok(false); // something else started using it: keep
                }
                m.remove(0).map(|()| true)
            });
            match result {
                Ok(true) => removed[n].push(name.to_owned()),
                Ok(false) => notes[n].push(format!("kept {name}: now in use")),
                Err(e) => notes[n].push(format!("could not remove {name} again: {e}")),
            }
        }
        for (n, r) in removed.into_iter().enumerate() {
            if !r.is_empty() {
                notes[n].insert(
                    0,
                    format!(
                        "rolled back: removed {} (inserted by this load before the failure)",
                        r.join(", ")
                    ),
                );
            }
        }
        notes
    }
}

/// A module whose checks failed before anything was inserted.
fn failed_module(f: Failure, lines: Vec<String>) -> LoadedModule {
    LoadedModule {
        error: Some(ErrorInfo::from(&f.error).with_libkmod(lines)),
        module: f.module,
        outcome: LoadOutcome::Failed,
        sequence: Vec::new(),
        options: Vec::new(),
        notes: f.notes,
    }
}

/// Parameters a module has: modinfo (complete: every `module_param`
/// declares a `parmtype`) plus what sysfs shows when loaded.
fn known_params(t: &Target, m: &Module<'_>) -> Vec<String> {
    let mut p: Vec<String> = m
        .info()
        .map(|i| {
            params_from_modinfo(&i)
                .into_iter()
                .map(|p| p.name)
                .collect()
        })
        .unwrap_or_default();
    if t.live {
        p.extend(sysfs::sys_parameters(&t.sys_root, &m.name()));
    }
    p.sort();
    p.dedup();
    p
}

fn unknown_params(given: &[ModOption], known: &[String]) -> Vec<String> {
    given
        .iter()
        .filter(|o| !known.iter().any(|k| o.is_param(k)))
        .map(|o| o.name.clone())
        .collect()
}

/// A failed load of one module (boxed: the error is large).
type LoadFailure = Box<Failure>;

/// What a failed load reports.
#[derive(Debug)]
struct Failure {
    /// Real module name.
    module: String,
    /// Why it failed.
    error: ModuleError,
    /// Remarks made on the way (e.g. the rollback).
    notes: Vec<String>,
}

/// One module of a load, taken through the steps of loading in order:
/// [`check_given_options`](Self::check_given_options) →
/// [`already_in_kernel`](Self::already_in_kernel) →
/// [`plan`](Self::plan) → [`judge_commands`](Self::judge_commands) →
/// (dry run stops here) → [`preflight`](Self::preflight) → (the pool
/// inserts; a failed name is rolled back) →
/// [`check_options_applied`](Self::check_options_applied).
struct LoadJob<'a, 'c> {
    t: &'a Target,
    ctx: &'c Context,
    m: &'a Module<'c>,
    req: &'a LoadRequest,
    flags: LoadFlags,
    /// Real module name.
    module: String,
    /// The given options in the kernel's form (libkmod's `extra_options`).
    extra: String,
    /// Parameters the module declares (modinfo, plus sysfs when loaded).
    known: Vec<String>,
    /// Given parameters not in `known`.
    unknown: Vec<String>,
    /// Remarks for the report, in the order the steps made them.
    notes: Vec<String>,
}

/// Where the module already is, when it needs no insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InKernel {
    Builtin,
    Loaded,
}

/// A module after phase 1.
enum Prepared<'a, 'c> {
    /// Nothing to insert (in the kernel, dry run) or failed already.
    Finished(LoadedModule),
    /// Its sequence goes to the pool.
    Insert(Pending<'a, 'c>),
}

/// A module whose sequence is to be inserted.
struct Pending<'a, 'c> {
    job: LoadJob<'a, 'c>,
    /// What libkmod's dry run would insert, in order, with the options.
    sequence: Vec<SeqStep>,
    /// The module's effective options.
    effective: Vec<EffectiveOption>,
}

/// Phase 1 for one module: every check that needs no insert.
fn prepare<'a, 'c>(
    t: &'a Target,
    ctx: &'c Context,
    m: &'a Module<'c>,
    req: &'a LoadRequest,
    flags: LoadFlags,
) -> Result<Prepared<'a, 'c>, LoadFailure> {
    let module = m.name();
    // The declared parameters matter only for given options: modinfo is
    // the module file's ELF section (and libkmod's kmod_module_get_info
    // also decodes the signature, through OpenSSL): not read for the
    // names without options.
    let known = if req.options.is_empty() {
        Vec::new()
    } else {
        known_params(t, m)
    };
    let mut job = LoadJob {
        unknown: unknown_params(&req.options, &known),
        known,
        extra: options::join(&req.options),
        module,
        notes: Vec::new(),
        t,
        ctx,
        m,
        req,
        flags,
    };
    let effective = options::merge(&m.options().unwrap_or_default(), &req.options);
    let done = |job: LoadJob<'_, '_>, outcome, sequence| {
        Prepared::Finished(LoadedModule {
            module: job.module,
            outcome,
            sequence,
            options: effective.clone(),
            notes: job.notes,
            error: None,
        })
    };
    if let Some(place) = job.already_in_kernel() {
        job.check_given_options(Some(place))?;
        let outcome = match place {
            InKernel::Builtin => LoadOutcome::Builtin,
            InKernel::Loaded => LoadOutcome::AlreadyLoaded,
        };
        return Ok(done(job, outcome, Vec::new()));
    }
    job.check_given_options(None)?;
    let pflags = job.probe_flags();
    let plan = job.plan(pflags)?;
    job.judge_commands(&plan)?;
    if flags.dry_run {
        return Ok(done(job, LoadOutcome::WouldLoad, seq(&plan)));
    }
    job.preflight()?;
    Ok(Prepared::Insert(Pending {
        job,
        sequence: seq(&plan),
        effective,
    }))
}

impl LoadJob<'_, '_> {
    fn fail(&self, e: ModuleError) -> LoadFailure {
        Box::new(Failure {
            module: self.module.clone(),
            error: e,
            notes: Vec::new(),
        })
    }

    /// Builtin, or loaded in the running kernel (live or coming): nothing
    /// to insert.
    fn already_in_kernel(&self) -> Option<InKernel> {
        let state = self.m.initstate();
        if matches!(state, Ok(InitState::Builtin)) || sysfs_builtin(self.t, self.m) {
            Some(InKernel::Builtin)
        } else if self.t.live && matches!(state, Ok(InitState::Live | InitState::Coming)) {
            Some(InKernel::Loaded)
        } else {
            None
        }
    }

    /// Given options against the module's declared parameters. For a module
    /// already in the kernel (`place`), sysfs is the full list, so an
    /// unknown one is an error; otherwise modinfo misses
    /// `module_param_call` parameters (nf_conntrack's hashsize), so it is a
    /// note and the real check comes after loading.
    fn check_given_options(&mut self, place: Option<InKernel>) -> Result<(), LoadFailure> {
        let module = &self.module;
        let Some(place) = place else {
            if !self.unknown.is_empty() {
                self.notes.push(format!(
                    "parameter(s) {} not declared in modinfo: {} against /sys/module/{module}/parameters after loading",
                    self.unknown.join(", "),
                    if self.flags.dry_run { "will be checked" } else { "checked" }
                ));
            }
            return Ok(());
        };
        // Only sysfs can tell for sure (modinfo misses module_param_call
        // parameters such as nf_conntrack's hashsize): an option unknown to
        // modinfo is unknown only if sysfs does not list it either.
        let verifiable = self.t.live && sysfs::in_sysfs(&self.t.sys_root, module);
        if !self.unknown.is_empty() && !verifiable {
            self.notes.push(format!(
                "cannot verify parameter(s) {}: not declared in modinfo and {module} is not in /sys/module",
                self.unknown.join(", ")
            ));
        } else if !self.unknown.is_empty() {
            let in_sysfs = sysfs::sys_parameters(&self.t.sys_root, module);
            let unknown: Vec<String> = self
                .unknown
                .iter()
                .filter(|u| !in_sysfs.iter().any(|p| options::parameq(u, p)))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(self.unknown_parameter(unknown, in_sysfs));
            }
        }
        if !self.req.options.is_empty() {
            self.notes.push(match place {
                InKernel::Builtin => format!("options not applied: {module} is built in; set them on the kernel command line ({module}.PARAM=VALUE) or in /sys/module/{module}/parameters"),
                InKernel::Loaded => format!("options not applied: {module} is already loaded (unload it first, or write /sys/module/{module}/parameters)"),
            });
        }
        Ok(())
    }

    /// libkmod probe flags for this load.
    fn probe_flags(&self) -> u32 {
        let mut pflags = probe_flags::APPLY_BLACKLIST_ALIAS_ONLY;
        if self.flags.apply_blacklist {
            pflags |= probe_flags::APPLY_BLACKLIST;
        }
        if self.flags.ignore_install {
            pflags |= probe_flags::IGNORE_COMMAND;
        }
        if !self.t.live || self.t.loaded_snapshot().is_some() {
            // Offline tree: the running kernel's state says nothing about it
            // (what `modprobe --show-depends` does too). Live: `plan`
            // filters the sequence by the run's snapshot of /proc/modules
            // instead of libkmod asking sysfs for every module of it.
            pflags |= probe_flags::IGNORE_LOADED;
        }
        pflags
    }

    fn extra_options(&self) -> Option<&str> {
        Some(self.extra.as_str()).filter(|e| !e.is_empty())
    }

    /// The error for a probe stopped by a blacklist flag.
    fn blacklisted(&self, flag: u32) -> ModuleError {
        let via_alias = self.module != ModuleName::canonical(&self.req.name);
        ModuleError::Blacklisted {
            op: Op::Load,
            name: self.req.name.clone(),
            module: self.module.clone(),
            via_alias: via_alias && flag == probe_flags::APPLY_BLACKLIST_ALIAS_ONLY,
        }
    }

    /// A dry-run probe first, so that commands are judged before anything
    /// is inserted: the modules a load would handle, in order.
    fn plan(&self, pflags: u32) -> Result<Vec<ProbeAction>, LoadFailure> {
        let plan = self.m.probe_insert(
            pflags | probe_flags::DRY_RUN,
            self.extra_options(),
            &mut |_, _| Ok(()),
        );
        match plan.result {
            Ok(0) => Ok(self.not_in_kernel(plan.actions)),
            Ok(flag) => Err(self.fail(self.blacklisted(flag))),
            Err(e) => {
                let errno = e.errno().unwrap_or(Errno::EINVAL);
                Err(self.fail(insert_error(
                    self.t,
                    self.ctx,
                    &self.module,
                    errno,
                    &self.extra,
                    e,
                )))
            }
        }
    }

    /// The actions libkmod would take on a live kernel: without
    /// `IGNORE_LOADED` it skips every module of the sequence that is live,
    /// coming or built in (`module_is_inkernel`) before it looks at its
    /// install command or inserts it; with the flag (set when the run has
    /// its snapshot) the same modules are dropped here, by the snapshot
    /// and the index's built-in mark, before [`Self::judge_commands`]: a
    /// loaded dependency's install line must not refuse the load.
    fn not_in_kernel(&self, mut actions: Vec<ProbeAction>) -> Vec<ProbeAction> {
        if let Some(loaded) = self.t.loaded_snapshot() {
            actions.retain(|a| !a.builtin && !loaded.contains(&a.module));
        }
        actions
    }

    /// Install commands in the plan: a policy command (`/bin/true`,
    /// `/bin/false`) on the target refuses the load and on a dependency
    /// skips it (noted); any other command refuses the load (nfkit never
    /// runs commands).
    fn judge_commands(&mut self, plan: &[ProbeAction]) -> Result<(), LoadFailure> {
        for a in plan.iter().filter(|a| a.install) {
            let cmd = a.install_command.clone().unwrap_or_default();
            if removal::is_policy_command(&cmd) {
                if a.module == self.module {
                    return Err(self.fail(ModuleError::DisabledByPolicy {
                        op: Op::Load,
                        module: self.module.clone(),
                        kind: CommandKind::Install,
                        command: cmd,
                    }));
                }
                self.notes.push(format!(
                    "dependency {} is disabled by policy (`install {} {cmd}`): not inserted",
                    a.module, a.module
                ));
            } else {
                return Err(self.fail(ModuleError::CommandRefused {
                    op: Op::Load,
                    module: a.module.clone(),
                    kind: CommandKind::Install,
                    command: cmd,
                }));
            }
        }
        Ok(())
    }

    /// A real insert needs the running kernel, with module support, and
    /// must not be one that only the host can do (issue 14 §6: refused
    /// before libkmod tries, with the reason `status` shows).
    fn preflight(&self) -> Result<(), LoadFailure> {
        let op = Op::Load;
        self.t
            .require_live(op, &self.module)
            .map_err(|e| self.fail(e))?;
        let proc_modules = self.t.proc_root.join("modules");
        if !proc_modules.exists() {
            return Err(self.fail(ModuleError::NoModuleSupport {
                op,
                module: self.module.clone(),
                detail: format!("no {}", proc_modules.display()),
            }));
        }
        if let Some(why) = self.t.module_loads_host_only() {
            return Err(self.fail(ModuleError::MustBeDoneOnHost {
                op,
                module: self.module.clone(),
                why,
            }));
        }
        Ok(())
    }

    /// Post-load check: current kernels ignore unknown parameters silently,
    /// so each given option must show in `/sys/module/M/parameters`.
    fn check_options_applied(&mut self) -> Result<(), LoadFailure> {
        let module = &self.module;
        let in_sysfs = sysfs::sys_parameters(&self.t.sys_root, module);
        let mut ignored = Vec::new();
        for o in &self.req.options {
            if in_sysfs.iter().any(|p| o.is_param(p)) {
                continue;
            }
            if self.known.iter().any(|p| o.is_param(p)) {
                self.notes.push(format!(
                    "parameter {} is not visible in /sys/module/{module}/parameters (declared without sysfs permissions)",
                    o.name
                ));
            } else {
                ignored.push(o.name.clone());
            }
        }
        if ignored.is_empty() {
            return Ok(());
        }
        Err(self.unknown_parameter(ignored, in_sysfs))
    }

    /// The failure for options the module does not accept, listing what it
    /// does accept: its sysfs parameters and the ones modinfo declares.
    fn unknown_parameter(&self, unknown: Vec<String>, in_sysfs: Vec<String>) -> LoadFailure {
        let mut accepted = in_sysfs;
        accepted.extend(self.known.iter().cloned());
        accepted.sort();
        accepted.dedup();
        self.fail(ModuleError::UnknownParameter {
            op: Op::Load,
            module: self.module.clone(),
            unknown,
            accepted,
        })
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
