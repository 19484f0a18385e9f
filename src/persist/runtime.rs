//! The running kernel's side of the desired state: what is loaded and set
//! now, and converging it (modules first, then the sysctls that exist only
//! once their module is loaded).

use std::collections::BTreeMap;

use serde::Serialize;

use super::desired::Desired;
use crate::conntrack::set::{self as ct_set, SetRequest};
use crate::modules::ops::{self, LoadFlags, LoadRequest};
use crate::modules::sysfs;
use crate::system::Host;

/// State of one desired module in the running kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    /// Loaded (live, coming or going).
    Loaded,
    /// Built into the kernel.
    Builtin,
    /// Not in the kernel.
    NotLoaded,
    /// Cannot be told (no module tree and no sysfs entry).
    Unknown,
}

/// The running state relevant to a desired state.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// Module name (as desired) → (real name, state).
    pub modules: BTreeMap<String, (String, ModuleState)>,
    /// `module.parameter` → current value in `/sys/module/M/parameters/P`.
    pub parameters: BTreeMap<String, Option<String>>,
    /// sysctl key → current value (`None`: key absent).
    pub sysctls: BTreeMap<String, Option<String>>,
}

/// The state of a module known by its real name from `/proc/modules` and
/// `/sys/module` alone, without libkmod (`None`: cannot tell from there).
fn state_from_kernel_files(host: &Host, loaded: &[String], name: &str) -> Option<ModuleState> {
    if loaded.iter().any(|m| m == name) {
        return Some(ModuleState::Loaded);
    }
    match sysfs::read_sys_module(&host.sys_root, name) {
        Some(m) if m.initstate.is_none() => Some(ModuleState::Builtin),
        Some(_) => Some(ModuleState::Loaded),
        None => None,
    }
}

/// Reads the running state for `desired`.
///
/// Names found in `/proc/modules` or `/sys/module` are settled from those
/// files; only the others (aliases, modules not loaded, built-ins without a
/// sysfs directory) are resolved through libkmod. In the steady state nothing
/// loads libkmod (and the libcrypto, libzstd and liblzma it pulls in), which
/// keeps `verify` and `apply --check` cheap.
pub fn read_running(host: &Host, desired: &Desired) -> Running {
    let mut running = Running::default();
    let names = desired.load_list();
    let loaded: Vec<String> = sysfs::read_proc_modules(&host.proc_root)
        .ok()
        .flatten()
        .map(|mods| mods.into_iter().map(|m| m.name).collect())
        .unwrap_or_default();
    let mut unsettled = Vec::new();
    for name in &names {
        let real = name.replace('-', "_");
        match state_from_kernel_files(host, &loaded, &real) {
            Some(state) => {
                running.modules.insert(name.clone(), (real, state));
            }
            None => unsettled.push(name.clone()),
        }
    }
    let resolved = if host.offline || unsettled.is_empty() {
        None
    } else {
        ops::resolve(host, None, &unsettled).ok()
    };
    for name in &unsettled {
        let from_resolve = resolved.as_ref().and_then(|r| {
            r.results
                .iter()
                .find(|x| &x.name == name)
                .and_then(|x| x.modules.first())
                .map(|m| {
                    let state = match m.state {
                        "builtin" => ModuleState::Builtin,
                        "not_loaded" => ModuleState::NotLoaded,
                        _ => ModuleState::Loaded,
                    };
                    (m.module.clone(), state)
                })
        });
        let entry = from_resolve.unwrap_or_else(|| {
            let state = if host.has_module_support() && !host.offline {
                ModuleState::NotLoaded
            } else {
                ModuleState::Unknown
            };
            (name.replace('-', "_"), state)
        });
        running.modules.insert(name.clone(), entry);
    }
    for (module, options) in desired.module_options() {
        for option in options {
            let parameter = option.split('=').next().unwrap_or_default().to_string();
            let path = host
                .sys("module")
                .join(&module)
                .join("parameters")
                .join(&parameter);
            let value = std::fs::read_to_string(path)
                .ok()
                .map(|v| v.trim().to_string());
            running
                .parameters
                .insert(format!("{module}.{parameter}"), value);
        }
    }
    let sysctl = host.sysctl();
    let mut keys: Vec<String> = desired
        .sysctl_settings()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    if desired.conntrack.buckets.is_some() {
        keys.push(crate::conntrack::KEY_BUCKETS.to_string());
    }
    for key in keys {
        let value = sysctl
            .read(&key)
            .ok()
            .flatten()
            .map(|v| v.trim().to_string());
        running.sysctls.insert(key, value);
    }
    running
}

/// One runtime difference (or change made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeChange {
    /// What: `module xt_state`, a sysctl key, `nf_conntrack.hashsize`.
    pub item: String,
    /// Value now (before).
    pub before: String,
    /// Value wanted (after).
    pub after: String,
    /// Whether apply can converge it without disruption.
    pub convergeable: bool,
    /// Explanation, when not convergeable or special.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn show(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "(absent)".into())
}

/// The differences between the running kernel and `desired`.
pub fn diff_running(desired: &Desired, running: &Running) -> Vec<RuntimeChange> {
    let mut changes = Vec::new();
    for (name, (real, state)) in &running.modules {
        if *state == ModuleState::NotLoaded {
            changes.push(RuntimeChange {
                item: format!("module {name}"),
                before: "not loaded".into(),
                after: if real != name {
                    format!("loaded ({real})")
                } else {
                    "loaded".into()
                },
                convergeable: true,
                note: None,
            });
        }
    }
    let buckets_key = crate::conntrack::KEY_BUCKETS;
    for (module, options) in desired.module_options() {
        let module_loaded = running.modules.values().any(|(real, state)| {
            real == &module && matches!(state, ModuleState::Loaded | ModuleState::Builtin)
        });
        for option in options {
            let (parameter, value) = option.split_once('=').unwrap_or((&option, ""));
            if module == "nf_conntrack" && parameter == "hashsize" {
                continue; // converged through the buckets sysctl below
            }
            let current = running
                .parameters
                .get(&format!("{module}.{parameter}"))
                .cloned()
                .flatten();
            if module_loaded && current.as_deref() != Some(value) {
                changes.push(RuntimeChange {
                    item: format!("{module}.{parameter}"),
                    before: show(&current),
                    after: value.to_string(),
                    convergeable: false,
                    note: Some(match current {
                        None => format!(
                            "{module} is loaded and has no parameter {parameter}: the kernel does not accept it"
                        ),
                        Some(_) => format!(
                            "takes effect when {module} is next loaded (reboot, or `nfkit modules unload {module}` then `nfkit apply`)"
                        ),
                    }),
                });
            }
        }
    }
    let mut wanted: Vec<(String, String)> = desired.sysctl_settings();
    if let Some(b) = desired.conntrack.buckets {
        wanted.push((
            buckets_key.to_string(),
            crate::conntrack::limits::effective_buckets(b).to_string(),
        ));
    }
    for (key, value) in wanted {
        let current = running.sysctls.get(&key).cloned().flatten();
        if current.as_deref() != Some(value.as_str()) {
            changes.push(RuntimeChange {
                item: key.clone(),
                before: show(&current),
                after: value,
                convergeable: true,
                note: current
                    .is_none()
                    .then(|| "set once its module is loaded".to_string()),
            });
        }
    }
    changes
}

/// Errors of converging the running kernel, one per failed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeFailure {
    /// The item.
    pub item: String,
    /// The error message (operation, object, cause).
    pub error: String,
    /// A hint.
    pub hint: Option<String>,
}

/// How modules get their options when converging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsFrom {
    /// From modprobe.d (apply has just written nfkit's file there).
    ModprobeD,
    /// Passed with the load, from the desired state (`nfkit boot`, for hosts
    /// whose modprobe.d nfkit does not manage).
    Desired,
}

/// Converges the running kernel: loads missing modules, then sets conntrack
/// limits and other sysctls (which exist only once their module is loaded).
/// Continues past failures and reports each.
pub fn converge(
    host: &Host,
    desired: &Desired,
    options_from: OptionsFrom,
) -> (Vec<RuntimeChange>, Vec<RuntimeFailure>) {
    let before = read_running(host, desired);
    let planned = diff_running(desired, &before);
    let mut failures = Vec::new();
    let to_load: Vec<LoadRequest> = before
        .modules
        .iter()
        .filter(|(_, (_, state))| *state == ModuleState::NotLoaded)
        .map(|(name, (real, _))| LoadRequest {
            name: name.clone(),
            options: match options_from {
                OptionsFrom::ModprobeD => Vec::new(),
                OptionsFrom::Desired => desired
                    .module_options()
                    .into_iter()
                    .filter(|(m, _)| m == real)
                    .flat_map(|(_, o)| o)
                    .filter_map(|o| crate::modules::options::parse_given(&o).ok())
                    .collect(),
            },
        })
        .collect();
    if !to_load.is_empty() {
        match ops::load(host, None, &to_load, LoadFlags::default()) {
            Ok(report) => {
                for result in report.results.iter().filter(|r| !r.ok) {
                    let error = result
                        .error
                        .clone()
                        .or_else(|| result.modules.iter().find_map(|m| m.error.clone()));
                    failures.push(RuntimeFailure {
                        item: format!("module {}", result.name),
                        error: error
                            .as_ref()
                            .map_or_else(|| "load failed".into(), |e| e.message.clone()),
                        hint: error.and_then(|e| e.hint),
                    });
                }
            }
            Err(e) => failures.push(RuntimeFailure {
                item: "modules".into(),
                error: e.to_string(),
                hint: e.hint(),
            }),
        }
    }
    let request = SetRequest {
        max: desired.conntrack.max,
        buckets: desired.conntrack.buckets,
    };
    if (request.max.is_some() || request.buckets.is_some())
        && let Err(e) = ct_set::set_limits(host, request, false)
    {
        failures.push(RuntimeFailure {
            item: "conntrack limits".into(),
            error: e.to_string(),
            hint: e.hint().map(str::to_string),
        });
    }
    let sysctl = host.sysctl();
    for (key, value) in &desired.sysctl {
        let value = value.render();
        let current = sysctl
            .read(key)
            .ok()
            .flatten()
            .map(|v| v.trim().to_string());
        if current.as_deref() == Some(value.as_str()) {
            continue;
        }
        if let Err(e) = sysctl.write(key, &value) {
            failures.push(RuntimeFailure {
                item: key.clone(),
                error: e.to_string(),
                hint: e.hint().map(str::to_string),
            });
        }
    }
    let failed_items: Vec<&str> = failures.iter().map(|f| f.item.as_str()).collect();
    let done = planned
        .into_iter()
        .filter(|c| c.convergeable && !failed_items.contains(&c.item.as_str()))
        .collect();
    (done, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> Desired {
        Desired::parse(
            "t",
            "[modules]\nload=[\"xt_state\"]\n[modules.options.nf_conntrack]\nexpect_hashsize = 2048\n[conntrack]\nmax=1000\nbuckets=1000\n",
        )
        .unwrap()
    }

    #[test]
    fn differences_between_running_and_desired() {
        let mut running = Running::default();
        running.modules.insert(
            "nf_conntrack".into(),
            ("nf_conntrack".into(), ModuleState::Loaded),
        );
        running.modules.insert(
            "xt_state".into(),
            ("xt_state".into(), ModuleState::NotLoaded),
        );
        running
            .parameters
            .insert("nf_conntrack.expect_hashsize".into(), Some("1024".into()));
        running
            .sysctls
            .insert("net.netfilter.nf_conntrack_max".into(), Some("1000".into()));
        running.sysctls.insert(
            "net.netfilter.nf_conntrack_buckets".into(),
            Some("512".into()),
        );
        let changes = diff_running(&desired(), &running);
        let items: Vec<&str> = changes.iter().map(|c| c.item.as_str()).collect();
        assert_eq!(
            items,
            [
                "module xt_state",
                "nf_conntrack.expect_hashsize",
                "net.netfilter.nf_conntrack_buckets"
            ]
        );
        assert!(!changes[1].convergeable);
        assert_eq!(changes[2].after, "1024", "buckets round up to 512s");
    }

    #[test]
    fn nothing_differs_when_converged() {
        let mut running = Running::default();
        running.modules.insert(
            "nf_conntrack".into(),
            ("nf_conntrack".into(), ModuleState::Builtin),
        );
        running
            .modules
            .insert("xt_state".into(), ("xt_state".into(), ModuleState::Loaded));
        running
            .parameters
            .insert("nf_conntrack.expect_hashsize".into(), Some("2048".into()));
        running
            .sysctls
            .insert("net.netfilter.nf_conntrack_max".into(), Some("1000".into()));
        running.sysctls.insert(
            "net.netfilter.nf_conntrack_buckets".into(),
            Some("1024".into()),
        );
        assert_eq!(diff_running(&desired(), &running), vec![]);
    }
}
