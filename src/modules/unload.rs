//! `nfkit modules unload`: the modprobe -r steps of [`super::removal`] run
//! against the live kernel, or simulated for a dry run (on the running
//! kernel's state, or on another tree's snapshot of it).

use std::fmt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::Serialize;

use super::error::{CommandKind, ErrorInfo, ModuleError, Op};
use super::name::{self, ModuleName};
use super::removal::{self, Backend, Facts, Refusal, State, Step};
use super::sysfs;
use super::target::{KmodLog, Target, lookup, sysfs_builtin};
use crate::kmod::{self, Context, InitState, Module};
use crate::system::Host;

/// Flags of `nfkit modules unload`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnloadFlags {
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// Ignore remove commands and softdeps (`modprobe -r -i`).
    pub ignore_install: bool,
}

/// The outcome for one module of an unload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnloadOutcome {
    /// Removed (with what it took along).
    Removed,
    /// Dry run: would be removed.
    WouldRemove,
    /// Not in the kernel: nothing to do.
    NotLoaded,
    /// Not removed: see the error.
    Failed,
}

impl UnloadOutcome {
    /// The name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            UnloadOutcome::Removed => "removed",
            UnloadOutcome::WouldRemove => "would_remove",
            UnloadOutcome::NotLoaded => "not_loaded",
            UnloadOutcome::Failed => "failed",
        }
    }
}

impl fmt::Display for UnloadOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The outcome for one module of an unload.
#[derive(Debug, Clone, Serialize)]
pub struct UnloadedModule {
    /// Real module name.
    pub module: String,
    /// What happened.
    pub outcome: UnloadOutcome,
    /// Every module removed (or that would be) or kept, in order.
    pub steps: Vec<Step>,
    /// The error, for `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// The outcome for one name of an unload.
#[derive(Debug, Clone, Serialize)]
pub struct UnloadResult {
    /// The name as given.
    pub name: String,
    /// True when nothing failed.
    pub ok: bool,
    /// Per module.
    pub modules: Vec<UnloadedModule>,
    /// The error, when the name itself failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// `nfkit modules unload` result.
#[derive(Debug, Clone, Serialize)]
pub struct UnloadReport {
    /// The module tree used.
    pub target: Target,
    /// Dry run?
    pub dry_run: bool,
    /// One entry per name.
    pub results: Vec<UnloadResult>,
    /// Everything libkmod logged (shown under `-v`; failures carry their
    /// own lines in their error).
    #[serde(skip)]
    pub libkmod_log: Vec<String>,
}

impl UnloadReport {
    /// True when every name succeeded.
    pub fn ok(&self) -> bool {
        self.results.iter().all(|r| r.ok)
    }
}

fn names_of(l: kmod::ModuleList<'_>) -> Vec<String> {
    l.names()
}

fn live_facts(ctx: &Context, sys_root: &Path, name: &str) -> Result<Facts, Errno> {
    let m = ctx
        .module(name)
        .map_err(|e| e.errno().unwrap_or(Errno::ENOENT))?;
    // A /sys/module directory without `initstate` is a built-in module that
    // modules.builtin does not list (libkmod >= 20 calls it "coming"): the
    // case on kernels without module support and without a module tree.
    let sysfs_builtin =
        || sysfs::read_sys_module(sys_root, name).is_some_and(|s| s.initstate.is_none());
    let state = match m.initstate() {
        Ok(InitState::Builtin) => State::Builtin,
        Ok(InitState::Coming) if sysfs_builtin() => State::Builtin,
        Ok(_) => State::Loaded,
        Err(_) => State::NotLoaded,
    };
    let (pre, post) = m
        .softdeps()
        .map(|(a, b)| (names_of(a), names_of(b)))
        .unwrap_or_default();
    Ok(Facts {
        name: name.to_owned(),
        state,
        refcnt: if state == State::Loaded {
            m.refcnt().unwrap_or(0)
        } else {
            0
        },
        holders: if state == State::Loaded {
            names_of(m.holders())
        } else {
            Vec::new()
        },
        deps: names_of(m.dependencies()),
        pre,
        post,
        remove_command: m.remove_commands(),
    })
}

/// The loaded state a dry run on a tree that is not the running kernel's
/// sees: with `--root`, the root's `proc/modules` and `sys/module` (an
/// image may carry a snapshot of them; without one nothing is loaded);
/// for another release of the live host, nothing (the running kernel's
/// modules are not that tree's).
struct TreeState {
    loaded: Vec<sysfs::ProcModule>,
    builtin: Vec<String>,
    sys_root: Option<PathBuf>,
}

impl TreeState {
    fn read(host: &Host, t: &Target) -> TreeState {
        let builtin = sysfs::read_in_tree(
            &t.module_dir,
            &t.module_dir.join("modules.builtin"),
            crate::read::Kind::ModuleIndex,
        )
        .ok()
        .flatten()
        .map(|text| {
            name::names_in_builtin(&text)
                .map(ModuleName::into_string)
                .collect()
        })
        .unwrap_or_default();
        let loaded = if host.offline {
            sysfs::read_proc_modules(&t.proc_root)
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        TreeState {
            loaded,
            builtin,
            sys_root: host.offline.then(|| t.sys_root.clone()),
        }
    }

    /// Facts from the tree (dependencies, softdeps, remove command from its
    /// modprobe.d) and this state.
    fn facts(&self, ctx: &Context, name: &str) -> Result<Facts, Errno> {
        let m = ctx
            .module(name)
            .map_err(|e| e.errno().unwrap_or(Errno::ENOENT))?;
        let proc = self.loaded.iter().find(|p| p.name == name);
        let sys_builtin = self.sys_root.as_ref().is_some_and(|root| {
            sysfs::read_sys_module(root, name).is_some_and(|s| s.initstate.is_none())
        });
        let state = if self.builtin.iter().any(|b| b == name) || (proc.is_none() && sys_builtin) {
            State::Builtin
        } else if proc.is_some() {
            State::Loaded
        } else {
            State::NotLoaded
        };
        let (pre, post) = m
            .softdeps()
            .map(|(a, b)| (names_of(a), names_of(b)))
            .unwrap_or_default();
        Ok(Facts {
            name: name.to_owned(),
            state,
            refcnt: proc
                .filter(|_| state == State::Loaded)
                .map_or(0, |p| p.refcnt),
            holders: proc
                .filter(|_| state == State::Loaded)
                .map(|p| p.holders.clone())
                .unwrap_or_default(),
            deps: names_of(m.dependencies()),
            pre,
            post,
            remove_command: m.remove_commands(),
        })
    }
}

/// The real backend: libkmod, re-reading the kernel's state every time.
struct Live<'c> {
    ctx: &'c Context,
    sys_root: &'c Path,
}

impl Backend for Live<'_> {
    fn facts(&mut self, name: &str) -> Result<Facts, Errno> {
        live_facts(self.ctx, self.sys_root, name)
    }

    fn remove(&mut self, name: &str) -> Result<(), Errno> {
        let m = self
            .ctx
            .module(name)
            .map_err(|e| e.errno().unwrap_or(Errno::ENOENT))?;
        m.remove(0).map_err(|e| e.errno().unwrap_or(Errno::EINVAL))
    }
}

fn refusal_error(t: &Target, module: &str, r: Refusal) -> ModuleError {
    let op = Op::Unload;
    let module = module.to_owned();
    match r {
        Refusal::Builtin => ModuleError::Builtin { op, module },
        Refusal::InUse { refcnt, holders } => ModuleError::InUse {
            op,
            module,
            refcnt,
            holders,
        },
        Refusal::DisabledByPolicy(command) => ModuleError::DisabledByPolicy {
            op,
            module,
            kind: CommandKind::Remove,
            command,
        },
        Refusal::Command(command) => ModuleError::CommandRefused {
            op,
            module,
            kind: CommandKind::Remove,
            command,
        },
        Refusal::Errno(Errno::EPERM) => ModuleError::NotPermitted {
            reason: sysfs::eperm_reason(&t.proc_root, &t.sys_root, &module),
            op,
            module,
        },
        Refusal::Errno(Errno::EBUSY | Errno::EAGAIN) => ModuleError::InUse {
            holders: sysfs::read_sys_module(&t.sys_root, &module)
                .map(|s| s.holders)
                .unwrap_or_default(),
            refcnt: 0,
            op,
            module,
        },
        Refusal::Errno(Errno::ENOSYS) => ModuleError::NoModuleSupport {
            op,
            module,
            detail: "delete_module: ENOSYS".into(),
        },
        Refusal::Errno(errno) => ModuleError::Kmod {
            op,
            source: kmod::Error::Call {
                call: "kmod_module_remove_module",
                arg: module.clone(),
                errno,
            },
            module,
        },
    }
}

/// `nfkit modules unload`: modprobe -r for each name (see
/// [`super::removal`]). Continues past a failed name.
pub fn unload(
    host: &Host,
    release: Option<&str>,
    names: &[String],
    flags: UnloadFlags,
) -> Result<UnloadReport, ModuleError> {
    let op = Op::Unload;
    let t = Target::new(host, release, op)?;
    let ctx = t.context(op)?;
    let mut log = KmodLog::default();
    log.take(&ctx);
    // A dry run on another tree plans from that tree; only a real unload
    // needs the running kernel.
    let tree_state = (flags.dry_run && !t.live).then(|| TreeState::read(host, &t));
    let job = UnloadJob {
        t: &t,
        ctx: &ctx,
        tree_state: tree_state.as_ref(),
        flags,
    };
    let mut results = Vec::new();
    for given in names {
        results.push(match job.modules_of(given) {
            Ok(mods) => {
                let mut modules = Vec::new();
                for m in &mods {
                    let (done, error) = job.unload_module(m);
                    let lines = log.take(&ctx);
                    modules.push(UnloadedModule {
                        error: error.map(|e| ErrorInfo::from(&e).with_libkmod(lines)),
                        ..done
                    });
                }
                UnloadResult {
                    name: given.clone(),
                    ok: modules.iter().all(|m| m.outcome != UnloadOutcome::Failed),
                    modules,
                    error: None,
                }
            }
            Err(e) => UnloadResult {
                name: given.clone(),
                ok: false,
                modules: Vec::new(),
                error: Some(ErrorInfo::from(&e).with_libkmod(log.take(&ctx))),
            },
        });
    }
    Ok(UnloadReport {
        libkmod_log: log.finish(&ctx),
        target: t,
        dry_run: flags.dry_run,
        results,
    })
}

/// What every name of one unload shares.
struct UnloadJob<'a, 'c> {
    t: &'a Target,
    ctx: &'c Context,
    /// The loaded state of another tree, for its dry run.
    tree_state: Option<&'a TreeState>,
    flags: UnloadFlags,
}

impl<'c> UnloadJob<'_, 'c> {
    /// The modules a name stands for. A loaded module the module directory
    /// does not know (the tree was removed after boot) can still be unloaded
    /// by name.
    fn modules_of(&self, given: &str) -> Result<Vec<Module<'c>>, ModuleError> {
        let (t, op) = (self.t, Op::Unload);
        if !self.flags.dry_run {
            t.require_live(op, given)?;
        }
        match lookup(self.ctx, t, op, given) {
            Ok(m) => Ok(m),
            Err(ModuleError::NotFound { .. })
                if sysfs::in_sysfs(&t.sys_root, ModuleName::canonical(given).as_str()) =>
            {
                let m = self
                    .ctx
                    .module(ModuleName::canonical(given).as_str())
                    .map_err(|source| ModuleError::Kmod {
                        op,
                        module: given.to_owned(),
                        source,
                    })?;
                Ok(vec![m])
            }
            Err(e) => Err(e),
        }
    }

    /// Unloads one module: for real, simulated on the running kernel's
    /// state (dry run), or simulated on another tree's (its dry run). The
    /// report entry has no error yet; the error, if any, comes apart.
    fn unload_module(&self, m: &Module<'_>) -> (UnloadedModule, Option<ModuleError>) {
        let (t, ctx, flags, op) = (self.t, self.ctx, self.flags, Op::Unload);
        let module = m.name();
        let entry = |outcome, steps| UnloadedModule {
            module: module.clone(),
            outcome,
            steps,
            error: None,
        };
        if !flags.dry_run && !t.proc_root.join("modules").exists() && !sysfs_builtin(t, m) {
            let e = ModuleError::NoModuleSupport {
                op,
                module: module.clone(),
                detail: format!("no {}", t.proc_root.join("modules").display()),
            };
            return (entry(UnloadOutcome::Failed, Vec::new()), Some(e));
        }
        let outcome = if let Some(state) = self.tree_state {
            let mut sim = removal::Simulated::new(|n: &str| state.facts(ctx, n));
            removal::unload(&mut sim, &module, flags.ignore_install)
        } else if flags.dry_run {
            let mut sim = removal::Simulated::new(|n: &str| live_facts(ctx, &t.sys_root, n));
            removal::unload(&mut sim, &module, flags.ignore_install)
        } else {
            let mut live = Live {
                ctx,
                sys_root: &t.sys_root,
            };
            removal::unload(&mut live, &module, flags.ignore_install)
        };
        let (kind, error) = match outcome.result {
            Ok(true) if flags.dry_run => (UnloadOutcome::WouldRemove, None),
            Ok(true) => (UnloadOutcome::Removed, None),
            Ok(false) if sysfs_builtin(t, m) => (
                UnloadOutcome::Failed,
                Some(ModuleError::Builtin {
                    op,
                    module: module.clone(),
                }),
            ),
            Ok(false) => (UnloadOutcome::NotLoaded, None),
            Err(r) => (UnloadOutcome::Failed, Some(refusal_error(t, &module, r))),
        };
        (entry(kind, outcome.steps), error)
    }
}
