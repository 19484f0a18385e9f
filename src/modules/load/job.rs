//! Phase 1 of a load: one module taken through every check that needs no
//! insert (options, already in the kernel, the dry-run plan, install
//! commands, the preflight), up to its load sequence.

use super::*;

/// Parameters a module has: modinfo (complete: every `module_param`
/// declares a `parmtype`) plus what sysfs shows when loaded.
pub(super) fn known_params(t: &Target, m: &Module<'_>) -> Vec<String> {
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

pub(super) fn unknown_params(given: &[ModOption], known: &[String]) -> Vec<String> {
    given
        .iter()
        .filter(|o| !known.iter().any(|k| o.is_param(k)))
        .map(|o| o.name.clone())
        .collect()
}

/// A failed load of one module (boxed: the error is large).
pub(super) type LoadFailure = Box<Failure>;

/// What a failed load reports.
#[derive(Debug)]
pub(super) struct Failure {
    /// Real module name.
    pub(super) module: String,
    /// Why it failed.
    pub(super) error: ModuleError,
    /// Remarks made on the way (e.g. the rollback).
    pub(super) notes: Vec<String>,
}

/// One module of a load, taken through the steps of loading in order:
/// [`check_given_options`](Self::check_given_options) →
/// [`already_in_kernel`](Self::already_in_kernel) →
/// [`plan`](Self::plan) → [`judge_commands`](Self::judge_commands) →
/// (dry run stops here) → [`preflight`](Self::preflight) → (the pool
/// inserts; a failed name is rolled back) →
/// [`check_options_applied`](Self::check_options_applied).
pub(super) struct LoadJob<'a, 'c> {
    pub(super) t: &'a Target,
    pub(super) ctx: &'c Context,
    pub(super) m: &'a Module<'c>,
    pub(super) req: &'a LoadRequest,
    pub(super) flags: LoadFlags,
    /// Real module name.
    pub(super) module: String,
    /// The given options in the kernel's form (libkmod's `extra_options`).
    pub(super) extra: String,
    /// Parameters the module declares (modinfo, plus sysfs when loaded).
    pub(super) known: Vec<String>,
    /// Given parameters not in `known`.
    pub(super) unknown: Vec<String>,
    /// Remarks for the report, in the order the steps made them.
    pub(super) notes: Vec<String>,
}

/// Where the module already is, when it needs no insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InKernel {
    Builtin,
    Loaded,
}

/// A module after phase 1.
pub(super) enum Prepared<'a, 'c> {
    /// Nothing to insert (in the kernel, dry run) or failed already.
    Finished(LoadedModule),
    /// Its sequence goes to the pool.
    Insert(Pending<'a, 'c>),
}

/// A module whose sequence is to be inserted.
pub(super) struct Pending<'a, 'c> {
    pub(super) job: LoadJob<'a, 'c>,
    /// What libkmod's dry run would insert, in order, with the options.
    pub(super) sequence: Vec<SeqStep>,
    /// The module's effective options.
    pub(super) effective: Vec<EffectiveOption>,
}

/// Phase 1 for one module: every check that needs no insert.
pub(super) fn prepare<'a, 'c>(
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
    pub(super) fn fail(&self, e: ModuleError) -> LoadFailure {
        Box::new(Failure {
            module: self.module.clone(),
            error: e,
            notes: Vec::new(),
        })
    }

    /// Builtin, or loaded in the running kernel (live or coming): nothing
    /// to insert.
    pub(super) fn already_in_kernel(&self) -> Option<InKernel> {
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
    pub(super) fn check_given_options(
        &mut self,
        place: Option<InKernel>,
    ) -> Result<(), LoadFailure> {
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
    pub(super) fn probe_flags(&self) -> u32 {
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

    pub(super) fn extra_options(&self) -> Option<&str> {
        Some(self.extra.as_str()).filter(|e| !e.is_empty())
    }

    /// The error for a probe stopped by a blacklist flag.
    pub(super) fn blacklisted(&self, flag: u32) -> ModuleError {
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
    pub(super) fn plan(&self, pflags: u32) -> Result<Vec<ProbeAction>, LoadFailure> {
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
    pub(super) fn not_in_kernel(&self, mut actions: Vec<ProbeAction>) -> Vec<ProbeAction> {
        if let Some(loaded) = self.t.loaded_snapshot() {
            actions.retain(|a| !a.builtin && !loaded.contains(&a.module));
        }
        actions
    }

    /// Install commands in the plan: a policy command (`/bin/true`,
    /// `/bin/false`) on the target refuses the load and on a dependency
    /// skips it (noted); any other command refuses the load (nfkit never
    /// runs commands).
    pub(super) fn judge_commands(&mut self, plan: &[ProbeAction]) -> Result<(), LoadFailure> {
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
    pub(super) fn preflight(&self) -> Result<(), LoadFailure> {
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
    pub(super) fn check_options_applied(&mut self) -> Result<(), LoadFailure> {
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
    pub(super) fn unknown_parameter(
        &self,
        unknown: Vec<String>,
        in_sysfs: Vec<String>,
    ) -> LoadFailure {
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
