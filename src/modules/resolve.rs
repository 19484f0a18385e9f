//! `nfkit modules resolve`: what a name resolves to, its state, options,
//! parameters and the sequence a load would insert.

use nix::errno::Errno;
use serde::Serialize;

use super::error::{ErrorInfo, ModuleError, Op};
use super::load::{SeqStep, seq};
use super::name::ModuleName;
use super::options::{self, EffectiveOption};
use super::state::ModState;
use super::target::{KmodLog, Target, lookup, sysfs_builtin};
use super::{legacy, removal};
use crate::kmod::{InitState, Module, probe_flags};
use crate::system::Host;

/// A module state as nfkit reports it.
fn state_of(t: &Target, m: &Module<'_>) -> ModState {
    match m.initstate() {
        Ok(InitState::Builtin) => ModState::Builtin,
        // Without the live kernel, /sys/module says nothing about this tree.
        _ if !t.live => ModState::NotLoaded,
        Ok(InitState::Live) => ModState::Live,
        Ok(InitState::Coming) => ModState::Coming,
        Ok(InitState::Going) => ModState::Going,
        Ok(_) => ModState::Unknown,
        Err(_) => ModState::NotLoaded,
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
    pub state: ModState,
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
    /// Everything libkmod logged (shown under `-v`; failures carry their
    /// own lines in their error).
    #[serde(skip)]
    pub libkmod_log: Vec<String>,
}

impl ResolveReport {
    /// True when every name resolved.
    pub fn ok(&self) -> bool {
        self.results.iter().all(|r| r.found)
    }
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
    let mut log = KmodLog::default();
    log.take(&ctx);
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
                    error: Some(ErrorInfo::from(&e).with_libkmod(log.take(&ctx))),
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
    Ok(ResolveReport {
        libkmod_log: log.finish(&ctx),
        target: t,
        results,
    })
}

/// What each name resolves to (its first module) and that module's state,
/// in the order given; `None` for a name that is not found. The part of
/// [`resolve`] that readers of the running state need
/// (`persist::runtime::read_running` on a cold boot asks for every desired
/// name): lookups and initstate only — no dry-run probe and no modinfo,
/// which opens and decompresses the module file and decodes its signature.
pub fn states(
    host: &Host,
    names: &[String],
) -> Result<Vec<Option<(String, ModState)>>, ModuleError> {
    let op = Op::Resolve;
    let t = Target::new(host, None, op)?;
    let ctx = t.context(op)?;
    Ok(names
        .iter()
        .map(|given| {
            let mods = lookup(&ctx, &t, op, given).ok()?;
            let m = mods.first()?;
            Some((m.name(), full_state(&t, m)))
        })
        .collect())
}

/// [`state_of`], with a built-in module that modules.builtin misses but
/// `/sys/module` shows.
fn full_state(t: &Target, m: &Module<'_>) -> ModState {
    let state = state_of(t, m);
    if state == ModState::NotLoaded && sysfs_builtin(t, m) {
        ModState::Builtin
    } else {
        state
    }
}

fn resolve_module(t: &Target, m: &Module<'_>, given: &str, blacklist: &[String]) -> ResolvedModule {
    let module = m.name();
    let via_alias = module != ModuleName::canonical(given);
    let state = full_state(t, m);
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
    let reason = if state == ModState::Builtin {
        Some("built into the kernel".to_owned())
    } else if matches!(state, ModState::Live | ModState::Coming) {
        Some("already loaded".to_owned())
    } else if blacklisted && via_alias {
        Some(format!(
            "blacklisted: `blacklist {module}` applies to aliases"
        ))
    } else if let Some(c) = target_cmd
        .as_deref()
        .filter(|c| removal::is_policy_command(c))
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
