//! `nfkit modules load`: modprobe's insert through libkmod, with the
//! options checked against the module's real parameters, install commands
//! never run, and a failed load rolled back.

use std::fmt;

use nix::errno::Errno;
use serde::Serialize;

use super::error::{CommandKind, ErrorInfo, ModuleError, Op};
use super::name::{self, ModuleName};
use super::options::{self, EffectiveOption, ModOption};
use super::resolve::params_from_modinfo;
use super::target::{KmodLog, Target, lookup, sysfs_builtin};
use super::{legacy, removal, sysfs};
use crate::kmod::{self, Context, InitState, Module, ProbeAction, probe_flags};
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

/// Flags of `nfkit modules load`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadFlags {
    /// Report what would be done; insert nothing.
    pub dry_run: bool,
    /// Apply the blacklist to names too (`modprobe -b`).
    pub apply_blacklist: bool,
    /// Ignore the target's install command and softdeps (`modprobe -i`).
    pub ignore_install: bool,
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
    m: &Module<'_>,
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
            vermagic: if failed == m.name() {
                m.info()
                    .ok()
                    .and_then(|i| i.into_iter().find(|(k, _)| k == "vermagic").map(|(_, v)| v))
            } else {
                None
            },
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
/// [`LoadReport::ok`].
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
    let mut results = Vec::new();
    for req in requests {
        let legacy = legacy::lookup(&req.name);
        let mods = match lookup(&ctx, &t, op, &req.name) {
            Ok(m) => m,
            Err(e) => {
                results.push(LoadResult {
                    name: req.name.clone(),
                    options: req.options.clone(),
                    ok: false,
                    modules: Vec::new(),
                    legacy: legacy.map(|l| l.note(&[])),
                    error: Some(ErrorInfo::from(&e).with_libkmod(log.take(&ctx))),
                });
                continue;
            }
        };
        log.take(&ctx);
        let names: Vec<String> = mods.iter().map(Module::name).collect();
        let mut modules: Vec<LoadedModule> = Vec::new();
        for m in &mods {
            let result = load_module(&t, &ctx, m, req, flags);
            let lines = log.take(&ctx);
            modules.push(result.unwrap_or_else(|f| LoadedModule {
                error: Some(ErrorInfo::from(&f.error).with_libkmod(lines)),
                module: f.module,
                outcome: LoadOutcome::Failed,
                sequence: Vec::new(),
                options: Vec::new(),
                notes: f.notes,
            }));
        }
        results.push(LoadResult {
            name: req.name.clone(),
            options: req.options.clone(),
            ok: modules.iter().all(|m| m.outcome != LoadOutcome::Failed),
            modules,
            legacy: legacy.map(|l| l.note(&names)),
            error: None,
        });
    }
    Ok(LoadReport {
        libkmod_log: log.finish(&ctx),
        target: t,
        dry_run: flags.dry_run,
        results,
    })
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

/// Removes, newest first, the modules a failed probe inserted before the one
/// that failed, so that a failed load leaves the kernel as it found it
/// (modprobe leaves them loaded). Returns notes for the report.
fn roll_back(ctx: &Context, inserted: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    let mut notes = Vec::new();
    for name in inserted.iter().rev() {
        let result = ctx.module(name).and_then(|m| {
            if m.refcnt()? > 0 {
                return Ok(false); // something else started using it: keep
            }
            m.remove(0).map(|()| true)
        });
        match result {
            Ok(true) => removed.push(name.clone()),
            Ok(false) => notes.push(format!("kept {name}: now in use")),
            Err(e) => notes.push(format!("could not remove {name} again: {e}")),
        }
    }
    if !removed.is_empty() {
        notes.insert(
            0,
            format!(
                "rolled back: removed {} (inserted as dependencies before the failure)",
                removed.join(", ")
            ),
        );
    }
    notes
}

/// One module of a load, taken through the steps of loading in order:
/// [`check_given_options`](Self::check_given_options) →
/// [`already_in_kernel`](Self::already_in_kernel) →
/// [`plan`](Self::plan) → [`judge_commands`](Self::judge_commands) →
/// (dry run stops here) → [`preflight`](Self::preflight) →
/// [`insert`](Self::insert) (rolled back on failure) →
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

fn load_module(
    t: &Target,
    ctx: &Context,
    m: &Module<'_>,
    req: &LoadRequest,
    flags: LoadFlags,
) -> Result<LoadedModule, LoadFailure> {
    let module = m.name();
    let known = known_params(t, m);
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
    let done = |job: LoadJob<'_, '_>, outcome, sequence| LoadedModule {
        module: job.module,
        outcome,
        sequence,
        options: effective.clone(),
        notes: job.notes,
        error: None,
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
    let inserted = job.insert(pflags)?;
    job.check_options_applied()?;
    Ok(done(job, LoadOutcome::Loaded, seq(&inserted)))
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
        // parameters such as nf_conntrack's hashsize).
        let verifiable = self.t.live && sysfs::in_sysfs(&self.t.sys_root, module);
        if !self.unknown.is_empty() && !verifiable {
            self.notes.push(format!(
                "cannot verify parameter(s) {}: not declared in modinfo and {module} is not in /sys/module",
                self.unknown.join(", ")
            ));
        } else if !self.unknown.is_empty() {
            return Err(self.fail(ModuleError::UnknownParameter {
                op: Op::Load,
                module: module.clone(),
                unknown: self.unknown.clone(),
                accepted: self.known.clone(),
            }));
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
        if !self.t.live {
            // Offline tree: the running kernel's state says nothing about it
            // (what `modprobe --show-depends` does too).
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
            Ok(0) => Ok(plan.actions),
            Ok(flag) => Err(self.fail(self.blacklisted(flag))),
            Err(e) => {
                let errno = e.errno().unwrap_or(Errno::EINVAL);
                Err(self.fail(insert_error(
                    self.t,
                    self.m,
                    &self.module,
                    errno,
                    &self.extra,
                    e,
                )))
            }
        }
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
        if let Some(why) = crate::containment::module_load_preflight(&self.t.proc_root) {
            return Err(self.fail(ModuleError::MustBeDoneOnHost {
                op,
                module: self.module.clone(),
                why,
            }));
        }
        Ok(())
    }

    /// The real insert. The install callback is only reached for the policy
    /// commands accepted by [`Self::judge_commands`]: `true` succeeds without
    /// running anything, `false` fails like the command would. On failure,
    /// the modules this probe inserted before the failing one are removed
    /// again ([`roll_back`]).
    fn insert(&self, pflags: u32) -> Result<Vec<ProbeAction>, LoadFailure> {
        let run = self
            .m
            .probe_insert(pflags, self.extra_options(), &mut |_, cmd| {
                if cmd.trim().ends_with("false") {
                    Err(Errno::EPERM)
                } else {
                    Ok(())
                }
            });
        match run.result {
            Ok(0) => Ok(run.actions),
            Ok(flag) => Err(self.fail(self.blacklisted(flag))),
            Err(e) => {
                let errno = e.errno().unwrap_or(Errno::EINVAL);
                // libkmod stops at the module that failed: the last one
                // reported; the ones before it were inserted by this probe.
                let failed = run
                    .actions
                    .last()
                    .map_or(self.module.clone(), |a| a.module.clone());
                let inserted: Vec<String> = run.actions[..run.actions.len().saturating_sub(1)]
                    .iter()
                    .filter(|a| !a.install && !a.builtin)
                    .map(|a| a.module.clone())
                    .collect();
                let notes = roll_back(self.ctx, &inserted);
                Err(Box::new(Failure {
                    module: self.module.clone(),
                    error: insert_error(self.t, self.m, &failed, errno, &self.extra, e),
                    notes,
                }))
            }
        }
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
        let mut accepted = in_sysfs;
        accepted.extend(self.known.iter().cloned());
        accepted.sort();
        accepted.dedup();
        Err(self.fail(ModuleError::UnknownParameter {
            op: Op::Load,
            module: module.clone(),
            unknown: ignored,
            accepted,
        }))
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
