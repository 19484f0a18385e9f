//! The module operations behind `nfkit modules list|resolve|load|unload`.
//!
//! Semantics are modprobe's (kmod tools/modprobe.c), with three deliberate
//! differences: install/remove commands are never run, a blacklisted or
//! policy-disabled module is reported (not a silent success), and options
//! given for a load are checked against the module's real parameters.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::Serialize;

use super::error::{ErrorInfo, ModuleError, Op};
use super::options::{self, EffectiveOption, ModOption};
use super::unload::{self, Backend, Facts, Refusal, State, Step};
use super::{legacy, name, suggest, sysfs};
use crate::kmod::{self, Context, InitState, Module, ProbeAction, probe_flags};
use crate::system::Host;

/// Which module tree and kernel an operation works on.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// File tree root (`/` or `--root`).
    pub root: PathBuf,
    /// Kernel release whose modules are used.
    pub release: String,
    /// `<root>/lib/modules/<release>`.
    pub module_dir: PathBuf,
    /// True when `release` is the running kernel and the tree is the live
    /// system: only then is the kernel's loaded state consulted, and only
    /// then can modules be inserted or removed.
    pub live: bool,
    /// The running kernel's release (live system only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_release: Option<String>,
    #[serde(skip)]
    proc_root: PathBuf,
    #[serde(skip)]
    sys_root: PathBuf,
    #[serde(skip)]
    config_paths: Option<Vec<PathBuf>>,
}

/// The modprobe.d directories below `root`, highest precedence first
/// (libkmod's list: /etc, /run, /usr/local/lib, /usr/lib (kmod ≥ 32), /lib).
pub fn config_dirs(root: &Path) -> Vec<PathBuf> {
    [
        "etc/modprobe.d",
        "run/modprobe.d",
        "usr/local/lib/modprobe.d",
        "usr/lib/modprobe.d",
        "lib/modprobe.d",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect()
}

impl Target {
    /// Picks the module tree: `release` if given; else the running kernel's
    /// (live system) or, under `--root`, the only release in
    /// `DIR/lib/modules` (or `DIR/proc/sys/kernel/osrelease`).
    pub fn new(host: &Host, release: Option<&str>, op: Op) -> Result<Target, ModuleError> {
        let running = if host.offline {
            None
        } else {
            host.kernel_release().or_else(|| {
                nix::sys::utsname::uname()
                    .ok()
                    .map(|u| u.release().to_string_lossy().into_owned())
            })
        };
        let release = match release {
            Some(r) => {
                if r.is_empty() || r.contains('/') || r == "." || r == ".." {
                    return Err(ModuleError::Target {
                        op,
                        detail: format!("invalid kernel release {r:?}"),
                    });
                }
                r.to_owned()
            }
            None if !host.offline => running.clone().ok_or_else(|| ModuleError::Target {
                op,
                detail: "cannot tell the running kernel's release (no /proc/sys/kernel/osrelease)"
                    .into(),
            })?,
            None => {
                let rels = sysfs::releases(&host.root);
                match (rels.as_slice(), host.kernel_release()) {
                    ([one], _) => one.clone(),
                    (_, Some(r)) if rels.contains(&r) => r,
                    ([], _) => {
                        return Err(ModuleError::Target {
                            op,
                            detail: format!(
                                "no kernel module tree under {}",
                                host.root.join("lib/modules").display()
                            ),
                        });
                    }
                    (many, _) => {
                        return Err(ModuleError::Target {
                            op,
                            detail: format!(
                                "{} holds several kernel releases ({}); pick one with --kernel-release",
                                host.root.join("lib/modules").display(),
                                many.join(", ")
                            ),
                        });
                    }
                }
            }
        };
        let live = !host.offline && running.as_deref() == Some(release.as_str());
        let config_paths = if host.root == Path::new("/") {
            None
        } else {
            Some(config_dirs(&host.root))
        };
        Ok(Target {
            module_dir: host.root.join("lib/modules").join(&release),
            root: host.root.clone(),
            release,
            live,
            running_release: running,
            proc_root: host.proc_root.clone(),
            sys_root: host.sys_root.clone(),
            config_paths,
        })
    }

    fn context(&self, op: Op) -> Result<Context, ModuleError> {
        let ctx = Context::new(Some(&self.module_dir), self.config_paths.as_deref()).map_err(
            |source| ModuleError::Kmod {
                op,
                module: String::new(),
                source,
            },
        )?;
        // Missing indexes are not fatal here: lookups then find nothing and
        // the "not found" error explains the missing module directory.
        let _ = ctx.load_resources();
        Ok(ctx)
    }

    fn require_live(&self, op: Op, module: &str) -> Result<(), ModuleError> {
        if self.live {
            return Ok(());
        }
        Err(ModuleError::Target {
            op,
            detail: format!(
                "{module}: cannot change the kernel: {} is not the running kernel{} (use --dry-run)",
                self.release,
                if self.root == Path::new("/") {
                    String::new()
                } else {
                    format!(" (--root {} is an offline tree)", self.root.display())
                }
            ),
        })
    }
}

/// A module state as nfkit reports it.
fn state_name(t: &Target, m: &Module<'_>) -> &'static str {
    match m.initstate() {
        Ok(InitState::Builtin) => "builtin",
        // Without the live kernel, /sys/module says nothing about this tree.
        _ if !t.live => "not_loaded",
        Ok(InitState::Live) => "live",
        Ok(InitState::Coming) => "coming",
        Ok(InitState::Going) => "going",
        Ok(_) => "unknown",
        Err(_) => "not_loaded",
    }
}

/// One parameter a module accepts (modinfo `parmtype`/`parm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    /// Parameter name.
    pub name: String,
    /// Type (`uint`, `bool`, `charp`, …), when declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Description, when declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Builds the parameter list from modinfo key/value pairs.
pub fn params_from_modinfo(info: &[(String, String)]) -> Vec<Param> {
    let mut out: Vec<Param> = Vec::new();
    for (k, v) in info {
        let (slot, is_type) = match k.as_str() {
            "parmtype" => (true, true),
            "parm" => (true, false),
            _ => (false, false),
        };
        if !slot {
            continue;
        }
        let (pname, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
        let rest = rest.trim();
        let idx = match out.iter().position(|p| p.name == pname) {
            Some(i) => i,
            None => {
                out.push(Param {
                    name: pname.to_owned(),
                    r#type: None,
                    description: None,
                });
                out.len() - 1
            }
        };
        let val = (!rest.is_empty()).then(|| rest.to_owned());
        if is_type {
            out[idx].r#type = val;
        } else {
            out[idx].description = val;
        }
    }
    out
}

/// One module libkmod would insert (or handle) for a load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeqStep {
    /// Module name.
    pub module: String,
    /// `insmod`, `install` (an install command) or `builtin`.
    pub action: &'static str,
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

fn seq(actions: &[ProbeAction]) -> Vec<SeqStep> {
    actions
        .iter()
        .filter(|a| a.install || a.path.is_some() || a.builtin)
        .map(|a| SeqStep {
            module: a.module.clone(),
            action: if a.install {
                "install"
            } else if a.builtin {
                "builtin"
            } else {
                "insmod"
            },
            path: a.path.clone(),
            options: a.options.clone(),
            install_command: a.install_command.clone(),
        })
        .collect()
}

/// Softdeps of a module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Softdeps {
    /// Loaded before.
    pub pre: Vec<String>,
    /// Loaded after.
    pub post: Vec<String>,
}

/// What one name resolves to.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedModule {
    /// Real module name.
    pub module: String,
    /// True when the name given was an alias of it.
    pub via_alias: bool,
    /// `.ko` file (none for builtin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `builtin`, `live`, `coming`, `going` or `not_loaded`.
    pub state: &'static str,
    /// In the modprobe.d blacklist.
    pub blacklisted: bool,
    /// Whether `nfkit modules load NAME` would insert it (false when
    /// already in the kernel, blacklisted via alias, or disabled by policy).
    pub would_load: bool,
    /// Why not, when `would_load` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// modprobe.d `install` command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_command: Option<String>,
    /// modprobe.d `remove` command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_command: Option<String>,
    /// Soft dependencies.
    pub softdeps: Softdeps,
    /// Options that would apply (modprobe.d + kernel command line + given).
    pub options: Vec<EffectiveOption>,
    /// Parameters the module accepts.
    pub parameters: Vec<Param>,
    /// Modules a load would handle, in order (dependencies, softdeps, the
    /// module): the same list as `modprobe --show-depends`.
    pub sequence: Vec<SeqStep>,
}

/// The resolution of one name.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    /// The name as given.
    pub name: String,
    /// Whether anything was found.
    pub found: bool,
    /// The modules it resolves to (usually one).
    pub modules: Vec<ResolvedModule>,
    /// A note when the name is a known old name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy: Option<String>,
    /// Closest module names, when nothing was found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
    /// The error, when the name could not be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// `nfkit modules resolve` result.
#[derive(Debug, Clone, Serialize)]
pub struct ResolveReport {
    /// The module tree used.
    pub target: Target,
    /// One entry per name.
    pub results: Vec<Resolved>,
}

impl ResolveReport {
    /// True when every name resolved.
    pub fn ok(&self) -> bool {
        self.results.iter().all(|r| r.found)
    }
}

fn not_found(t: &Target, op: Op, given: &str, resolved: &[String]) -> ModuleError {
    let known = sysfs::known_module_names(&t.module_dir);
    let norm = name::normalize(given);
    let mut suggestions = suggest::closest(&norm, known.iter().map(String::as_str), 3);
    let legacy = legacy::lookup(given);
    if let Some(r) = legacy.and_then(legacy::LegacyName::replacement) {
        if known.iter().any(|k| k == r) && !suggestions.iter().any(|s| s == r) {
            suggestions.insert(0, r.to_owned());
        }
    }
    ModuleError::NotFound {
        op,
        name: given.to_owned(),
        dir: t.module_dir.clone(),
        suggestions,
        legacy: legacy.map(|l| l.note(resolved)),
    }
}

/// Looks a name up. Names that libkmod cannot resolve because the module
/// directory is missing (kernels without modules, like many VMs and
/// containers) fall back to `/sys/module/<name>` on the live system.
fn lookup<'c>(
    ctx: &'c Context,
    t: &Target,
    op: Op,
    given: &str,
) -> Result<Vec<Module<'c>>, ModuleError> {
    name::validate(given).map_err(|problem| ModuleError::InvalidName {
        op,
        name: given.to_owned(),
        problem,
    })?;
    let list = ctx.lookup(given).map_err(|source| ModuleError::Kmod {
        op,
        module: given.to_owned(),
        source,
    })?;
    if !list.is_empty() {
        return Ok(list.modules());
    }
    if t.live {
        let norm = name::normalize(given);
        let candidate = if sysfs::in_sysfs(&t.sys_root, &norm) {
            Some(norm)
        } else {
            legacy::lookup(given)
                .and_then(legacy::LegacyName::replacement)
                .filter(|r| sysfs::in_sysfs(&t.sys_root, r))
                .map(str::to_owned)
        };
        if let Some(c) = candidate {
            if let Ok(m) = ctx.module(&c) {
                return Ok(vec![m]);
            }
        }
    }
    Err(not_found(t, op, given, &[]))
}

/// Built-in fallback for a module libkmod does not know: a `/sys/module`
/// directory without `initstate` is a built-in module.
fn sysfs_builtin(t: &Target, m: &Module<'_>) -> bool {
    t.live
        && m.path().is_none()
        && sysfs::read_sys_module(&t.sys_root, &m.name()).is_some_and(|s| s.initstate.is_none())
}

/// `nfkit modules resolve NAME...`.
pub fn resolve(
    host: &Host,
    release: Option<&str>,
    names: &[String],
) -> Result<ResolveReport, ModuleError> {
    let op = Op::Resolve;
    let t = Target::new(host, release, op)?;
    let ctx = t.context(op)?;
    let blacklist = ctx.blacklist();
    let mut results = Vec::new();
    for given in names {
        let mods = match lookup(&ctx, &t, op, given) {
            Ok(m) => m,
            Err(e) => {
                let (legacy, suggestions) = match &e {
                    ModuleError::NotFound {
                        legacy,
                        suggestions,
                        ..
                    } => (legacy.clone(), suggestions.clone()),
                    _ => (None, Vec::new()),
                };
                results.push(Resolved {
                    name: given.clone(),
                    found: false,
                    modules: Vec::new(),
                    legacy,
                    suggestions,
                    error: Some(ErrorInfo::from(&e)),
                });
                continue;
            }
        };
        let resolved_names: Vec<String> = mods.iter().map(Module::name).collect();
        let mut out = Vec::new();
        for m in &mods {
            out.push(resolve_module(&t, m, given, &blacklist));
        }
        results.push(Resolved {
            name: given.clone(),
            found: true,
            modules: out,
            legacy: legacy::lookup(given).map(|l| l.note(&resolved_names)),
            suggestions: Vec::new(),
            error: None,
        });
    }
    Ok(ResolveReport { target: t, results })
}

fn resolve_module(t: &Target, m: &Module<'_>, given: &str, blacklist: &[String]) -> ResolvedModule {
    let module = m.name();
    let via_alias = module != name::normalize(given);
    let mut state = state_name(t, m);
    if state == "not_loaded" && sysfs_builtin(t, m) {
        state = "builtin";
    }
    let blacklisted = blacklist.contains(&module);
    let (pre, post) = m
        .softdeps()
        .map(|(a, b)| (a.names(), b.names()))
        .unwrap_or_default();
    let install_command = m.install_commands();
    let probe = m.probe_insert(
        probe_flags::DRY_RUN | probe_flags::IGNORE_LOADED,
        None,
        &mut |_, _| Err(Errno::EPERM),
    );
    let sequence = seq(&probe.actions);
    let target_cmd = if pre.is_empty() && post.is_empty() {
        install_command.clone()
    } else {
        // "softdep takes precedence" over install (modprobe.d(5)).
        None
    };
    let reason = if state == "builtin" {
        Some("built into the kernel".to_owned())
    } else if matches!(state, "live" | "coming") {
        Some("already loaded".to_owned())
    } else if blacklisted && via_alias {
        Some(format!(
            "blacklisted: `blacklist {module}` applies to aliases"
        ))
    } else if let Some(c) = target_cmd
        .as_deref()
        .filter(|c| unload::is_policy_command(c))
    {
        Some(format!("disabled by policy (`install {module} {c}`)"))
    } else {
        target_cmd
            .as_deref()
            .map(|c| format!("install command `{c}` (nfkit never runs it; --ignore-install loads the module itself)"))
    };
    ResolvedModule {
        path: m.path(),
        state,
        blacklisted,
        would_load: reason.is_none(),
        reason,
        install_command,
        remove_command: m.remove_commands(),
        softdeps: Softdeps { pre, post },
        options: options::merge(&m.options().unwrap_or_default(), &[]),
        parameters: m
            .info()
            .map(|i| params_from_modinfo(&i))
            .unwrap_or_default(),
        sequence,
        via_alias,
        module,
    }
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
    /// `loaded`, `would_load`, `already_loaded`, `builtin` or `failed`.
    pub outcome: &'static str,
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
                    error: Some(ErrorInfo::from(&e)),
                });
                continue;
            }
        };
        let names: Vec<String> = mods.iter().map(Module::name).collect();
        let modules: Vec<LoadedModule> = mods
            .iter()
            .map(|m| {
                load_module(&t, &ctx, m, req, flags).unwrap_or_else(|b| {
                    let (module, e, notes) = *b;
                    LoadedModule {
                        module,
                        outcome: "failed",
                        sequence: Vec::new(),
                        options: Vec::new(),
                        notes,
                        error: Some(ErrorInfo::from(&e)),
                    }
                })
            })
            .collect();
        results.push(LoadResult {
            name: req.name.clone(),
            options: req.options.clone(),
            ok: modules.iter().all(|m| m.outcome != "failed"),
            modules,
            legacy: legacy.map(|l| l.note(&names)),
            error: None,
        });
    }
    Ok(LoadReport {
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
        .filter(|o| !known.iter().any(|k| k.replace('-', "_") == o.key()))
        .map(|o| o.name.clone())
        .collect()
}

/// A failed load: the module, the error, and notes (e.g. the rollback).
type LoadFailure = Box<(String, ModuleError, Vec<String>)>;

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

fn load_module(
    t: &Target,
    ctx: &Context,
    m: &Module<'_>,
    req: &LoadRequest,
    flags: LoadFlags,
) -> Result<LoadedModule, LoadFailure> {
    let op = Op::Load;
    let module = m.name();
    let fail = |e: ModuleError| Box::new((module.clone(), e, Vec::new()));
    let extra = options::join(&req.options);
    let effective = options::merge(&m.options().unwrap_or_default(), &req.options);
    let mut notes = Vec::new();
    let known = known_params(t, m);
    let unknown = unknown_params(&req.options, &known);
    let is_builtin = matches!(m.initstate(), Ok(InitState::Builtin)) || sysfs_builtin(t, m);
    let loaded = t.live && matches!(m.initstate(), Ok(InitState::Live | InitState::Coming));

    if is_builtin || loaded {
        // Only sysfs can tell for sure (modinfo misses module_param_call
        // parameters such as nf_conntrack's hashsize).
        let verifiable = t.live && sysfs::in_sysfs(&t.sys_root, &module);
        if !unknown.is_empty() && !verifiable {
            notes.push(format!(
                "cannot verify parameter(s) {}: not declared in modinfo and {module} is not in /sys/module",
                unknown.join(", ")
            ));
        } else if !unknown.is_empty() {
            return Err(fail(ModuleError::UnknownParameter {
                op,
                module: module.clone(),
                unknown,
                accepted: known,
            }));
        }
        if !req.options.is_empty() {
            notes.push(if is_builtin {
                format!("options not applied: {module} is built in; set them on the kernel command line ({module}.PARAM=VALUE) or in /sys/module/{module}/parameters")
            } else {
                format!("options not applied: {module} is already loaded (unload it first, or write /sys/module/{module}/parameters)")
            });
        }
        return Ok(LoadedModule {
            outcome: if is_builtin {
                "builtin"
            } else {
                "already_loaded"
            },
            module,
            sequence: Vec::new(),
            options: effective,
            notes,
            error: None,
        });
    }
    if !unknown.is_empty() {
        // modinfo lists every module_param but not module_param_call ones
        // (e.g. nf_conntrack hashsize): the real check is after loading.
        notes.push(format!(
            "parameter(s) {} not declared in modinfo: {} against /sys/module/{module}/parameters after loading",
            unknown.join(", "),
            if flags.dry_run { "will be checked" } else { "checked" }
        ));
    }

    let mut pflags = probe_flags::APPLY_BLACKLIST_ALIAS_ONLY;
    if flags.apply_blacklist {
        pflags |= probe_flags::APPLY_BLACKLIST;
    }
    if flags.ignore_install {
        pflags |= probe_flags::IGNORE_COMMAND;
    }
    if !t.live {
        // Offline tree: the running kernel's state says nothing about it
        // (what `modprobe --show-depends` does too).
        pflags |= probe_flags::IGNORE_LOADED;
    }
    let via_alias = module != name::normalize(&req.name);
    let blacklisted = |flag: u32| ModuleError::Blacklisted {
        op,
        name: req.name.clone(),
        module: module.clone(),
        via_alias: via_alias && flag == probe_flags::APPLY_BLACKLIST_ALIAS_ONLY,
    };

    // Plan first (dry run), so that commands are judged before anything is
    // inserted.
    let plan = m.probe_insert(
        pflags | probe_flags::DRY_RUN,
        Some(&extra).filter(|e| !e.is_empty()).map(String::as_str),
        &mut |_, _| Ok(()),
    );
    match plan.result {
        Ok(0) => {}
        Ok(flag) => return Err(fail(blacklisted(flag))),
        Err(e) => {
            let errno = e.errno().unwrap_or(Errno::EINVAL);
            return Err(fail(insert_error(t, m, &module, errno, &extra, e)));
        }
    }
    for a in plan.actions.iter().filter(|a| a.install) {
        let cmd = a.install_command.clone().unwrap_or_default();
        if unload::is_policy_command(&cmd) {
            if a.module == module {
                return Err(fail(ModuleError::DisabledByPolicy {
                    op,
                    module: module.clone(),
                    kind: "install",
                    command: cmd,
                }));
            }
            notes.push(format!(
                "dependency {} is disabled by policy (`install {} {cmd}`): not inserted",
                a.module, a.module
            ));
        } else {
            return Err(fail(ModuleError::CommandRefused {
                op,
                module: a.module.clone(),
                kind: "install",
                command: cmd,
            }));
        }
    }
    let sequence = seq(&plan.actions);
    if flags.dry_run {
        return Ok(LoadedModule {
            module,
            outcome: "would_load",
            sequence,
            options: effective,
            notes,
            error: None,
        });
    }
    t.require_live(op, &module).map_err(fail)?;
    if !t.proc_root.join("modules").exists() {
        return Err(fail(ModuleError::NoModuleSupport {
            op,
            module: module.clone(),
            detail: format!("no {}", t.proc_root.join("modules").display()),
        }));
    }

    // The real insert. The install callback is only reached for the
    // policy commands accepted above: `true` succeeds without running
    // anything, `false` fails like the command would.
    let run = m.probe_insert(
        pflags,
        Some(&extra).filter(|e| !e.is_empty()).map(String::as_str),
        &mut |_, cmd| {
            if cmd.trim().ends_with("false") {
                Err(Errno::EPERM)
            } else {
                Ok(())
            }
        },
    );
    match run.result {
        Ok(0) => {}
        Ok(flag) => return Err(fail(blacklisted(flag))),
        Err(e) => {
            let errno = e.errno().unwrap_or(Errno::EINVAL);
            // libkmod stops at the module that failed: the last one reported;
            // the ones before it were inserted by this probe.
            let failed = run
                .actions
                .last()
                .map_or(module.clone(), |a| a.module.clone());
            let inserted: Vec<String> = run.actions[..run.actions.len().saturating_sub(1)]
                .iter()
                .filter(|a| !a.install && !a.builtin)
                .map(|a| a.module.clone())
                .collect();
            let notes = roll_back(ctx, &inserted);
            return Err(Box::new((
                module.clone(),
                insert_error(t, m, &failed, errno, &extra, e),
                notes,
            )));
        }
    }
    // Post-load check: current kernels ignore unknown parameters silently.
    let in_sysfs = sysfs::sys_parameters(&t.sys_root, &module);
    let mut ignored = Vec::new();
    for o in &req.options {
        if in_sysfs.iter().any(|p| p.replace('-', "_") == o.key()) {
            continue;
        }
        if known.iter().any(|p| p.replace('-', "_") == o.key()) {
            notes.push(format!(
                "parameter {} is not visible in /sys/module/{module}/parameters (declared without sysfs permissions)",
                o.name
            ));
        } else {
            ignored.push(o.name.clone());
        }
    }
    if !ignored.is_empty() {
        let mut accepted = in_sysfs;
        accepted.extend(known);
        accepted.sort();
        accepted.dedup();
        return Err(fail(ModuleError::UnknownParameter {
            op,
            module: module.clone(),
            unknown: ignored,
            accepted,
        }));
    }
    Ok(LoadedModule {
        module,
        outcome: "loaded",
        sequence: seq(&run.actions),
        options: effective,
        notes,
        error: None,
    })
}

/// Flags of `nfkit modules unload`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnloadFlags {
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// Ignore remove commands and softdeps (`modprobe -r -i`).
    pub ignore_install: bool,
}

/// The outcome for one module of an unload.
#[derive(Debug, Clone, Serialize)]
pub struct UnloadedModule {
    /// Real module name.
    pub module: String,
    /// `removed`, `would_remove`, `not_loaded` or `failed`.
    pub outcome: &'static str,
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
        let builtin = std::fs::read_to_string(t.module_dir.join("modules.builtin"))
            .map(|text| sysfs::known_module_names_from_builtin(&text))
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
            kind: "remove",
            command,
        },
        Refusal::Command(command) => ModuleError::CommandRefused {
            op,
            module,
            kind: "remove",
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
/// [`super::unload`]). Continues past a failed name.
pub fn unload(
    host: &Host,
    release: Option<&str>,
    names: &[String],
    flags: UnloadFlags,
) -> Result<UnloadReport, ModuleError> {
    let op = Op::Unload;
    let t = Target::new(host, release, op)?;
    let ctx = t.context(op)?;
    // A dry run on another tree plans from that tree; only a real unload
    // needs the running kernel.
    let tree_state = (flags.dry_run && !t.live).then(|| TreeState::read(host, &t));
    let mut results = Vec::new();
    for given in names {
        let res = (|| -> Result<Vec<UnloadedModule>, ModuleError> {
            if !flags.dry_run {
                t.require_live(op, given)?;
            }
            let mods = match lookup(&ctx, &t, op, given) {
                Ok(m) => m,
                // A loaded module the module directory does not know (the
                // tree was removed after boot) can still be unloaded by name.
                Err(ModuleError::NotFound { .. })
                    if sysfs::in_sysfs(&t.sys_root, &name::normalize(given)) =>
                {
                    vec![ctx.module(&name::normalize(given)).map_err(|source| {
                        ModuleError::Kmod {
                            op,
                            module: given.clone(),
                            source,
                        }
                    })?]
                }
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for m in &mods {
                let module = m.name();
                if !flags.dry_run && !t.proc_root.join("modules").exists() && !sysfs_builtin(&t, m)
                {
                    out.push(UnloadedModule {
                        error: Some(ErrorInfo::from(&ModuleError::NoModuleSupport {
                            op,
                            module: module.clone(),
                            detail: format!("no {}", t.proc_root.join("modules").display()),
                        })),
                        module,
                        outcome: "failed",
                        steps: Vec::new(),
                    });
                    continue;
                }
                let outcome = if let Some(state) = &tree_state {
                    let mut sim = unload::Simulated::new(|n: &str| state.facts(&ctx, n));
                    unload::unload(&mut sim, &module, flags.ignore_install)
                } else if flags.dry_run {
                    let mut sim =
                        unload::Simulated::new(|n: &str| live_facts(&ctx, &t.sys_root, n));
                    unload::unload(&mut sim, &module, flags.ignore_install)
                } else {
                    let mut live = Live {
                        ctx: &ctx,
                        sys_root: &t.sys_root,
                    };
                    unload::unload(&mut live, &module, flags.ignore_install)
                };
                let (kind, error) = match outcome.result {
                    Ok(true) if flags.dry_run => ("would_remove", None),
                    Ok(true) => ("removed", None),
                    Ok(false) if sysfs_builtin(&t, m) => (
                        "failed",
                        Some(ModuleError::Builtin {
                            op,
                            module: module.clone(),
                        }),
                    ),
                    Ok(false) => ("not_loaded", None),
                    Err(r) => ("failed", Some(refusal_error(&t, &module, r))),
                };
                out.push(UnloadedModule {
                    module,
                    outcome: kind,
                    steps: outcome.steps,
                    error: error.as_ref().map(ErrorInfo::from),
                });
            }
            Ok(out)
        })();
        results.push(match res {
            Ok(modules) => UnloadResult {
                name: given.clone(),
                ok: modules.iter().all(|m| m.outcome != "failed"),
                modules,
                error: None,
            },
            Err(e) => UnloadResult {
                name: given.clone(),
                ok: false,
                modules: Vec::new(),
                error: Some(ErrorInfo::from(&e)),
            },
        });
    }
    Ok(UnloadReport {
        target: t,
        dry_run: flags.dry_run,
        results,
    })
}

/// One module in `nfkit modules list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedModule {
    /// Module name.
    pub name: String,
    /// Size in bytes (loaded modules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Reference count (loaded modules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refcount: Option<u32>,
    /// Modules holding it.
    pub holders: Vec<String>,
    /// `live`, `coming`, `going` or `builtin`.
    pub state: String,
}

/// `nfkit modules list` result.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    /// Whether the kernel can load modules (`/proc/modules` exists).
    pub module_support: bool,
    /// False: netfilter modules only.
    pub all: bool,
    /// The modules, sorted by name.
    pub modules: Vec<ListedModule>,
    /// A remark for the reader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `nfkit modules list`: /proc/modules, plus built-in modules from
/// /sys/module (directories without `initstate`) and the running release's
/// modules.builtin. Needs no libkmod.
pub fn list(host: &Host, all: bool) -> Result<ListReport, ModuleError> {
    let op = Op::List;
    let proc = sysfs::read_proc_modules(&host.proc_root).map_err(|source| ModuleError::Io {
        op,
        path: host.proc_root.join("modules"),
        source,
    })?;
    let sys = sysfs::read_sys_modules(&host.sys_root).unwrap_or_default();
    let mut modules: Vec<ListedModule> = Vec::new();
    if let Some(p) = &proc {
        modules.extend(p.iter().map(|m| ListedModule {
            name: m.name.clone(),
            size: Some(m.size),
            refcount: Some(m.refcnt),
            holders: m.holders.clone(),
            state: m.state.clone(),
        }));
    }
    let mut builtin: Vec<String> = sys
        .iter()
        .filter(|s| s.initstate.is_none())
        .map(|s| s.name.clone())
        .collect();
    if proc.is_some() {
        if let Some(rel) = host.kernel_release() {
            let text = std::fs::read_to_string(
                host.root
                    .join("lib/modules")
                    .join(rel)
                    .join("modules.builtin"),
            )
            .unwrap_or_default();
            builtin.extend(sysfs::known_module_names_from_builtin(&text));
        }
    }
    for b in builtin {
        if !modules.iter().any(|m| m.name == b) {
            modules.push(ListedModule {
                name: b,
                size: None,
                refcount: None,
                holders: Vec::new(),
                state: "builtin".into(),
            });
        }
    }
    if !all {
        modules.retain(|m| sysfs::is_netfilter(&m.name));
    }
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    let note = if proc.is_none() {
        Some(format!(
            "this kernel has no loadable module support ({} is missing): modules are built in, listed from {}",
            host.proc_root.join("modules").display(),
            host.sys_root.join("module").display()
        ))
    } else {
        None
    };
    Ok(ListReport {
        module_support: proc.is_some(),
        all,
        modules,
        note,
    })
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
    fn modinfo_params() {
        let info: Vec<(String, String)> = [
            ("parm", "hashsize:Size of the hash table (uint)"),
            ("parmtype", "hashsize:uint"),
            ("parmtype", "acct:bool"),
            ("vermagic", "6.1.0 SMP"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let p = params_from_modinfo(&info);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "hashsize");
        assert_eq!(p[0].r#type.as_deref(), Some("uint"));
        assert_eq!(
            p[0].description.as_deref(),
            Some("Size of the hash table (uint)")
        );
        assert_eq!(p[1].description, None);
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
    fn list_on_fake_trees() {
        let t = tempfile::tempdir().unwrap();
        let host = Host::offline(t.path());
        // No /proc/modules: built-ins only.
        std::fs::create_dir_all(t.path().join("sys/module/nf_conntrack/parameters")).unwrap();
        std::fs::create_dir_all(t.path().join("sys/module/tcp_cubic/parameters")).unwrap();
        let r = list(&host, false).unwrap();
        assert!(!r.module_support);
        assert_eq!(r.modules.len(), 1);
        assert_eq!(r.modules[0].state, "builtin");
        assert!(r.note.unwrap().contains("no loadable module support"));
        assert_eq!(list(&host, true).unwrap().modules.len(), 2);
        // With /proc/modules.
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(
            t.path().join("proc/modules"),
            "xt_state 16384 1 - Live 0x0\nx_tables 53248 2 xt_state, Live 0x0\nvirtio_net 1 0 - Live 0x0\n",
        )
        .unwrap();
        std::fs::create_dir_all(t.path().join("sys/module/xt_state")).unwrap();
        std::fs::write(t.path().join("sys/module/xt_state/initstate"), "live\n").unwrap();
        let r = list(&host, false).unwrap();
        assert!(r.module_support);
        let names: Vec<_> = r.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["nf_conntrack", "x_tables", "xt_state"]);
        assert_eq!(r.modules[1].holders, vec!["xt_state"]);
    }

    #[test]
    fn target_picks_the_only_release_offline() {
        let t = tempfile::tempdir().unwrap();
        let host = Host::offline(t.path());
        assert_eq!(
            Target::new(&host, None, Op::Resolve).unwrap_err().kind(),
            "target"
        );
        std::fs::create_dir_all(t.path().join("lib/modules/6.1.0-9-amd64")).unwrap();
        let tg = Target::new(&host, None, Op::Resolve).unwrap();
        assert_eq!(tg.release, "6.1.0-9-amd64");
        assert!(!tg.live);
        assert_eq!(
            tg.config_paths.as_ref().unwrap()[0],
            t.path().join("etc/modprobe.d")
        );
        std::fs::create_dir_all(t.path().join("lib/modules/6.12.0-1-amd64")).unwrap();
        let e = Target::new(&host, None, Op::Resolve).unwrap_err();
        assert!(e.to_string().contains("--kernel-release"), "{e}");
        assert_eq!(
            Target::new(&host, Some("6.12.0-1-amd64"), Op::Resolve)
                .unwrap()
                .release,
            "6.12.0-1-amd64"
        );
        assert!(Target::new(&host, Some("../x"), Op::Resolve).is_err());
    }
}
